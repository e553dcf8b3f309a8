"""What caps the built-in teacher: FID of its autoencoder's reconstructions, then of the teacher's samples.

    python benchmarks/teacher_quality.py      # -> benchmarks/results/teacher_quality.json

1. VAE rows: the teacher's stage 1 (``studio teacher train``'s autoencoder, ``studio.teacher.vae_stage``) with
   the settings of each entry of VAES: L1 + KL alone, and with the patch-GAN term (adaptive weight) switched on
   at a stated step. Each is scored by FID and KID of its reconstructions (posterior mean, decoded) of the first
   ``--n`` training images against all 10,000 test images; the same real training images are the floor.
2. Teacher rows: the UNet stage on a VAE row (``studio teacher train --vae``) at each budget of TEACHERS; FID
   and KID of ``--n`` class-prompted samples (25 DPM-Solver++ steps at the recommended guidance,
   ``TeacherConfig.sample_guidance``; image k has the prompt of class k mod 10 and seed k, as ``studio fid``)
   against the test split, and a sweep over the guidance scales of SWEEP at N = ``--n-sweep``.
Resumable: models under runs/bench/teacher_quality, FIDs cached per row and N; rerun to continue. The JSON is
rewritten as each row finishes; a committed row whose model folder is absent is kept (a new checkout does not
retrain it). The teacher row of the default recipe (``studio teacher train``'s defaults: the same
seeds and settings) is packed into benchmarks/results/teacher_assets.tar.gz (pipeline files only), which
``benchmarks/instaflow.py`` unpacks as its teacher instead of training one.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

from _common import RESULTS, train_seconds, write_result
from _scoring import cached, measure, real_features

import torch
from diffusers import AutoencoderKL

from studio.data import FASHION_MNIST_CLASSES, class_prompts, load_dataset
from studio.diffusion.sampling import generate
from studio.models.backbone import is_pipeline_dir, load_pipeline
from studio.models.presets import build_pipeline, tokenizer_corpus
from studio.teacher import TeacherConfig, train_teacher
from studio.teacher.commands import VAE_DIR, vae_stage
from studio.files import write_bytes
from studio.training.driver import run

ROOT = Path("runs/bench/teacher_quality")
TEACHER_ASSETS = RESULTS / "teacher_assets.tar.gz"  # the teacher of the default recipe, for benchmarks/instaflow.py
# name: TeacherConfig fields of the VAE stage (vae_steps at batch 32, lr 1e-3 with cosine decay)
VAES = {
    "l1-500": dict(vae_steps=500, vae_disc_weight=0.0),  # today's budget
    "l1-3000": dict(vae_steps=3000, vae_disc_weight=0.0),
    "gan-3000": dict(vae_steps=3000, vae_disc_weight=0.5, vae_disc_start=1000),
}
# name: the VAE row it trains on, and TeacherConfig.train fields of the UNet stage (batch 32, lr 1e-3, cosine)
SWEEP = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0)  # the teacher rows' guidance sweep (25 steps, N = --n-sweep)
OLD_GUIDANCE = 5.0  # the old teacher's recommended guidance, also scored at N = --n
TEACHERS = {
    "unet-16000": dict(vae="l1-3000", steps=16000),  # the old budget: 2,000 UNet steps on l1-500
}


def train_vae(name: str, fields: dict) -> tuple[Path, float]:
    out = ROOT / f"vae-{name}"
    base = TeacherConfig()
    cfg = replace(base, out=str(out), **fields, train=replace(base.train, resume="latest", progress=False))
    if not (out / VAE_DIR / "config.json").is_file():
        data = load_dataset("fashion-mnist", resolution=32)
        pipe = build_pipeline("tiny", tokenizer_corpus(data.class_names, sorted(set(data.captions))), seed=0)
        if run(cfg, [vae_stage(cfg, pipe, data)]) is None:
            raise SystemExit(f"interrupted in {out}; rerun to resume")
    return out / VAE_DIR, train_seconds(out / "stages" / "vae")


def reconstructions(vae_dir: Path, n: int):
    vae = AutoencoderKL.from_pretrained(str(vae_dir), use_safetensors=True).eval()
    data = load_dataset("fashion-mnist", resolution=32, limit=n)

    @torch.no_grad()
    def make(lo, count):
        return vae.decode(vae.encode(data.pixels(slice(lo, lo + count))).latent_dist.mean).sample.clamp(-1, 1)

    return make


def teacher_samples(pipe_dir: Path, guidance: float):
    pipe = load_pipeline(str(pipe_dir))
    prompts = class_prompts(FASHION_MNIST_CLASSES)

    def make(lo, count):
        ps = [prompts[k % 10] for k in range(lo, lo + count)]
        return torch.from_numpy(generate(pipe, ps, steps=25, guidance=guidance, seed=lo, batch_size=125)).permute(0, 3, 1, 2) * 2 - 1

    return make


def committed_rows() -> dict:
    """The committed rows of teacher_quality.json by (kind, name), read before this run rewrites the file: a row
    whose model folder is absent (a new checkout has no runs/) is kept when its settings and N match."""
    path = RESULTS / "teacher_quality.json"
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text())
    return {"real_train": saved["real_train"], **{(k, r["name"]): r for k in ("vae", "teacher") for r in saved[k]}}


def kept(saved: dict, key, fields: dict, n: int, folder: Path) -> dict | None:
    row = saved.get(key)
    if folder.exists() or row is None or row["n"] != n or any(row.get(k) != v for k, v in fields.items()):
        return None
    print(key[1], "kept from the committed", RESULTS / "teacher_quality.json", flush=True)
    return row


def is_default_recipe(vae_fields: dict, unet_fields: dict) -> bool:
    """Whether a VAE row and a UNet row together are what ``studio teacher train`` trains by default."""
    base = TeacherConfig()
    return all(getattr(base, k) == v for k, v in vae_fields.items()) and \
        all(getattr(base.train, k) == v for k, v in unet_fields.items())


def pack_teacher(out: Path) -> None:
    """The pipeline of ``out`` (no training state) into TEACHER_ASSETS as teacher/..., same files same bytes."""
    files = [f for f in sorted(out.rglob("*")) if f.is_file() and not {"stages", "train", "logs"} & set(f.parts)]
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for f in files:
            info = tarfile.TarInfo("teacher/" + f.relative_to(out).as_posix())
            info.size, info.mode = f.stat().st_size, 0o644
            tar.addfile(info, io.BytesIO(f.read_bytes()))
    write_bytes(TEACHER_ASSETS, buf.getvalue())
    print(f"packed {out} into {TEACHER_ASSETS}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--n-sweep", type=int, default=1000, help="N of each guidance of the teacher rows' sweep")
    a = p.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    saved = committed_rows()
    real = real_features()
    data = load_dataset("fashion-mnist", resolution=32, limit=a.n)
    floor = saved.get("real_train") if saved.get("real_train", {}).get("n") == a.n else None
    floor = floor or cached(ROOT, "real-train", a.n,
                            lambda: measure(lambda lo, c: data.pixels(slice(lo, lo + c)), a.n, real))
    vae_rows, teacher_rows = [], []
    for name, fields in VAES.items():
        row = kept(saved, ("vae", name), fields, a.n, ROOT / f"vae-{name}")
        if row is None:
            vae_dir, seconds = train_vae(name, fields)
            m = cached(ROOT, f"vae-{name}", a.n, lambda: measure(reconstructions(vae_dir, a.n), a.n, real))
            row = {"name": name, **fields, "train_s": seconds, **m}
        vae_rows.append(row)
        print(name, round(row["fid"], 2), flush=True)
        report(a, floor, vae_rows, teacher_rows)
    for name, spec in TEACHERS.items():
        vae_name, fields = spec["vae"], {k: v for k, v in spec.items() if k != "vae"}
        out = ROOT / f"teacher-{name}-on-{vae_name}"
        g = TeacherConfig().sample_guidance  # the recommended guidance, as studio_model.json says
        row = kept(saved, ("teacher", name), {"vae": vae_name, **fields, "guidance": g}, a.n, out)
        if row is None:
            train_vae(vae_name, VAES[vae_name])
            if not is_pipeline_dir(out):
                base = TeacherConfig()
                cfg = replace(base, out=str(out), vae=str(ROOT / f"vae-{vae_name}" / VAE_DIR), **VAES[vae_name],
                              train=replace(base.train, **fields, resume="latest", progress=False))
                if train_teacher(cfg) is None:
                    raise SystemExit(f"interrupted in {out}; rerun to resume")
            sweep = [{"guidance": s, **cached(ROOT, f"{out.name}-g{s:g}", a.n_sweep,
                                              lambda: measure(teacher_samples(out, s), a.n_sweep, real))}
                     for s in SWEEP]
            m, old = (cached(ROOT, f"{out.name}-g{x:g}", a.n, lambda: measure(teacher_samples(out, x), a.n, real))
                      for x in (g, OLD_GUIDANCE))
            row = {"name": name, "vae": vae_name, **fields, "train_s": train_seconds(out / "stages" / "unet"),
                   "guidance": g, **m, "at_old_guidance": {"guidance": OLD_GUIDANCE, **old}, "guidance_sweep": sweep}
            if is_default_recipe(VAES[vae_name], fields):
                pack_teacher(out)
        teacher_rows.append(row)
        print(name, round(row["fid"], 2), flush=True)
        report(a, floor, vae_rows, teacher_rows)


def report(a, floor: dict, vae_rows: list[dict], teacher_rows: list[dict]) -> None:
    write_result("teacher_quality", {
        "what": "FID of the built-in teacher's VAE reconstructions and of its samples, Fashion-MNIST 32x32, CPU",
        "command": "python benchmarks/teacher_quality.py",
        "reference": "Fashion-MNIST test split, all 10,000 images; studio.fid protocol (tf-bilinear)",
        "real_train": floor, "vae": vae_rows, "teacher": teacher_rows, "n": a.n,
        "goals": {"vae_recon_fid_at_most_8": min((r["fid"] for r in vae_rows), default=None),
                  "teacher_25step_fid_at_most_25": min((r["fid"] for r in teacher_rows), default=None)},
    })


if __name__ == "__main__":
    main()
