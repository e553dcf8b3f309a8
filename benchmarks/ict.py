"""iCT on Fashion-MNIST (32x32) against a pixel-space diffusion model of the same UNet and budget.

    python benchmarks/ict.py          # -> benchmarks/results/ict.json and ict_grid.png

Both models: the ``consistency.model.SMALL_UNET`` UNet2DModel (1.1M parameters), unconditional,
the same optimizer steps, batch, optimizer (RAdam), learning rate and EMA; iCT per
``consistency.recipe``, the diffusion model is DDPM's epsilon objective
(``consistency.diffusion_baseline``) sampled with 25 SDE-DPM-Solver++ steps, x0 clipped to [-1, 1]. FID (studio.fid,
tf-bilinear) from N generated images against all 10,000 Fashion-MNIST test images.
Resumable: rerun the command after an interruption (outputs under runs/bench/ict). A run with
another ``--root`` is a study: it writes its ict.json and grid into that root, not into
benchmarks/results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import RESULTS, train_seconds, write_result
from _scoring import uint8

from consistency.config import ICTConfig
from consistency.diffusion_baseline import PixelDiffusion
from consistency.diffusion_baseline import export_pipeline as export_ddpm
from consistency.diffusion_baseline import sample as sample_ddpm
from consistency.model import build_unet
from consistency.commands import train_ict
from consistency.sampling import default_sigmas
from consistency.sampling import sample as sample_cm
from studio.models.backbone import is_pipeline_dir, save_pipeline
from studio.data import load_dataset
from studio.fid.extractor import FeatureExtractor
from studio.fid.frechet import frechet_distance
from studio.fid.run import FIDOptions, FIDStatsConfig, compute_stats
from studio.fid.stats import FeatureStats, load_stats
from studio.images import make_grid, save_png
from studio.training.config import TrainerConfig
from studio.training.loop import train

DEFAULT_ROOT = "runs/bench/ict"


def _train_cfg(a) -> TrainerConfig:
    return TrainerConfig(steps=a.steps, batch_size=a.batch, lr=a.lr, optimizer="radam", ema_decay=0.999,
                         max_grad_norm=a.max_grad_norm, checkpoint_every=250, log_every=50, resume="latest")


def stages(a) -> dict:
    from diffusers import ConsistencyModelPipeline, DDPMPipeline

    root = Path(a.root)
    path = root / "stage_seconds.json"
    spent = json.loads(path.read_text()) if path.is_file() else {}  # a finished stage keeps its figure

    if not is_pipeline_dir(root / "ict"):
        done = train_ict(replace(ICTConfig(out=str(root / "ict"), dropout=a.dropout, s1=a.s1), train=_train_cfg(a)))
        spent["ict_train_s"] = train_seconds(root / "ict" / "train")
        path.write_text(json.dumps(spent, indent=2))
        if done is None:
            raise SystemExit(f"interrupted in {root / 'ict'}; rerun the command to resume")
    if not is_pipeline_dir(root / "diffusion"):
        data = load_dataset("fashion-mnist", resolution=32)
        result = train(PixelDiffusion(build_unet(0, a.dropout), data), _train_cfg(a), root / "diffusion" / "train")
        spent["diffusion_train_s"] = train_seconds(root / "diffusion" / "train")
        path.write_text(json.dumps(spent, indent=2))
        if result.interrupted:
            raise SystemExit(f"interrupted in {root / 'diffusion'}; rerun the command to resume")
        save_pipeline(export_ddpm(result.modules["unet"].eval()), root / "diffusion")
    ict = ConsistencyModelPipeline.from_pretrained(str(root / "ict")).unet.eval()
    ddpm = DDPMPipeline.from_pretrained(str(root / "diffusion")).unet.eval()
    return {"ict": ict, "diffusion": ddpm, "spent": spent}


def fid(make, n: int, ref: Path, batch: int = 250) -> float:
    ex = FeatureExtractor(None, "tf-bilinear", "cpu")
    stats = FeatureStats(2048)
    for lo in range(0, n, batch):
        stats.update(ex(uint8(make(lo, min(batch, n - lo)))))
    mu, sigma = stats.mu_sigma()
    mu_r, sigma_r, _, _ = load_stats(ref)
    return float(frechet_distance(mu_r, sigma_r, mu, sigma))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--s1", type=int, default=1280, help="iCT's final discretisation s1 (curriculum cap)")
    p.add_argument("--max-grad-norm", type=float, default=1.0,
                   help="gradient clipping of both models; 0 disables (iCT does not clip)")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--diffusion-steps", type=int, default=25)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--root", default=DEFAULT_ROOT, help="where the models and their checkpoints go")
    a = p.parse_args()
    Path(a.root).mkdir(parents=True, exist_ok=True)
    models = stages(a)
    ict, ddpm = models["ict"], models["diffusion"]
    rows = [
        {"name": "iCT 1-step", "make": lambda lo, n: sample_cm(ict, n, lo, default_sigmas(1))},
        {"name": "iCT 2-step (sigma_mid 0.821)", "make": lambda lo, n: sample_cm(ict, n, lo, default_sigmas(2))},
        {"name": f"diffusion {a.diffusion_steps}-step SDE-DPM-Solver++",
         "make": lambda lo, n: sample_ddpm(ddpm, n, lo, a.diffusion_steps)},
    ]
    ref = Path(a.root) / "fashion-mnist-test.npz"
    if not ref.is_file():
        compute_stats(FIDStatsConfig(spec="fashion-mnist:test", out=str(ref), opts=FIDOptions(num=0)))
    times = {r["name"]: [] for r in rows}
    for _ in range(a.repeats):  # alternate models within each repeat
        for r in rows:
            t0 = time.perf_counter()
            r["make"](10**6, 64)
            times[r["name"]].append((time.perf_counter() - t0) / 64 * 1000)
    for r in rows:  # FIDs are cached per row and N (a model change needs its cache file deleted)
        cache = Path(a.root) / "fid" / f"{r['name'].split(' (')[0].replace(' ', '_')}_n{a.n}.json"
        if not cache.is_file():
            cache.parent.mkdir(exist_ok=True)
            cache.write_text(json.dumps({"fid": fid(r["make"], a.n, ref)}))
        r["fid"] = json.loads(cache.read_text())["fid"]
        r["n"] = a.n
        r["ms_per_image"] = statistics.median(times[r["name"]])
        print(r["name"], r["fid"], r["ms_per_image"])
    study = Path(a.root).resolve() != Path(DEFAULT_ROOT).resolve()  # a study leaves the committed figures alone
    results = Path(a.root) if study else RESULTS
    grid = np.concatenate([uint8(r["make"](0, 10)) for r in rows])
    save_png(make_grid(grid, nrow=10), results / "ict_grid.png")
    base = rows[2]["fid"]
    write_result("ict", {
        "what": "iCT vs a pixel-space DDPM of the same UNet (1.1M params) and budget, Fashion-MNIST 32x32, CPU",
        "command": " ".join(["python", "benchmarks/ict.py", *sys.argv[1:]]),
        "rows": [{k: v for k, v in r.items() if k != "make"} for r in rows],
        "goals": {"ict_1step_vs_diffusion": rows[0]["fid"] / base, "ict_2step_vs_diffusion": rows[1]["fid"] / base,
                  "1step_within_1.4x": rows[0]["fid"] <= 1.4 * base, "2step_within_1.2x": rows[1]["fid"] <= 1.2 * base},
        "budget": {"optimizer_steps_each": a.steps, "batch": a.batch, "lr": a.lr, "optimizer": "radam",
                   "ema_decay": 0.999, "dropout": a.dropout, "max_grad_norm": a.max_grad_norm, "ict_s1": a.s1,
                   **models["spent"]},
        "grid": f"{a.root if study else 'benchmarks/results'}/ict_grid.png (rows: iCT 1-step, iCT 2-step, diffusion)",
    }, results)


if __name__ == "__main__":
    main()
