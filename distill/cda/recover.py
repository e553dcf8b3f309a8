"""``studio cda recover``: synthesise IPC images per class from the teacher (SRe2L "recover",
with CDA's crop curriculum).

Per unit (IPC index i, group of classes): a batch holding one image of each class in the group
is optimised for ``--iterations`` steps on the shared loop with the objective
``distill.cda.objective.Recovery`` (loss = CE(teacher(A(x)), y) + r_bn * R_BN; SRe2L Sec. 3.2,
CDA Sec. 3); Adam betas (0.5, 0.9), cosine LR without warm-up. Deviations: lossless PNG output (the paper saved JPEG);
for a teacher trained on grayscale data (``channels`` 1 in classifier.json) the images are one
channel repeated to three, so the synthetic set stays in the data's colour space (the papers
only distil RGB sets); ``--channels 3`` optimises three free channels.

Layout of OUT: ``<class>/ipc_0000.png`` (one folder per class, loadable by the studio's image-
folder loader), ``manifest.json`` (settings, classes, finished units, losses, ms/iteration) and
``.work/`` (checkpoints of the unit in progress). A finished unit is never recomputed; a killed
unit resumes from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from studio import StudioError
from studio.cli.schema import validate
from studio.files import write_json
from studio.training.checkpoints import list_checkpoints
from studio.data.captioned import CAPTION_TEMPLATES, caption
from studio.data.imagefolder import folder_name
from studio.devices import process_state
from studio.images import from_unit_hwc, save_png, to_uint8, to_unit_hwc
from studio.training.randomness import stream_seed
from studio.training.config import TrainerConfig
from studio.training.loop import train

from studio.models.classifier import load_classifier
from distill.cda.config import RecoverConfig
from distill.cda.objective import Recovery

MANIFEST = "manifest.json"
# settings that change what a unit produces; a rerun into OUT with other values is refused
_KEYED = ("teacher", "iterations", "curriculum", "milestone", "lr", "r_bn", "first_bn_multiplier", "jitter",
          "classes_per_batch", "channels", "init", "seed")


def _check(cfg: RecoverConfig) -> None:
    validate(cfg)
    if not (cfg.init == "noise" or cfg.init.startswith("generator:")):
        raise StudioError(f"--init {cfg.init!r}: use noise or generator:PIPELINE_DIR")


def _manifest(out: Path, cfg: RecoverConfig, classes: list[str], meta: dict) -> dict:
    path = out / MANIFEST
    settings = {k: getattr(cfg, k) for k in _KEYED}
    if path.is_file():
        try:
            man = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise StudioError(f"{path} is corrupt; move it away (finished PNGs are kept) and rerun") from None
        if man.get("settings") != settings:
            diff = [k for k in _KEYED if man.get("settings", {}).get(k) != settings[k]]
            raise StudioError(f"{out} was recovered with other settings ({', '.join(diff)}); "
                              "use another --out or the same settings")
        return man
    return {"settings": settings, "classes": classes, "folders": [folder_name(c) for c in classes],
            "resolution": meta["resolution"], "teacher_arch": meta["arch"], "teacher_width": meta.get("width", 64),
            "format": "png (lossless; the paper saved JPEG)", "units": {}}


def _write_manifest(out: Path, man: dict) -> None:
    """Atomic write; units recorded meanwhile by another process (another IPC range) are kept."""
    path = out / MANIFEST
    if path.is_file():
        try:
            man["units"] = {**json.loads(path.read_text()).get("units", {}), **man["units"]}
        except json.JSONDecodeError:
            pass
    write_json(path, man)


class _Generator:
    """The ``--init generator:DIR`` pipeline, loaded once, on the first unit that needs it."""

    def __init__(self, src: str):
        self.src, self._pipe = src, None

    def __call__(self, prompts: list[str], seed: int) -> np.ndarray:
        from studio.models.backbone import load_pipeline
        from studio.models.model_info import sampling_settings
        from studio.diffusion.sampling import generate

        if self._pipe is None:
            self._pipe = load_pipeline(self.src)
        steps, guidance = sampling_settings(self.src)
        return generate(self._pipe, prompts, steps=steps, guidance=guidance, seed=seed)


def _init_images(cfg: RecoverConfig, ipc_id: int, group: list[int], classes: list[str], res: int,
                 channels: int = 3, generator: _Generator | None = None) -> torch.Tensor:
    if cfg.init == "noise":
        g = torch.Generator().manual_seed(stream_seed(cfg.seed, "cda-init", ipc_id, group[0]))
        return torch.randn((len(group), channels, res, res), generator=g)
    generator = generator or _Generator(cfg.init.split(":", 1)[1])
    prompts = [caption(CAPTION_TEMPLATES[0], classes[c]) for c in group]
    imgs = generator(prompts, seed=stream_seed(cfg.seed, "cda-gen", ipc_id) % 2**31)
    x = from_unit_hwc(imgs)
    if channels == 1:
        x = x.mean(1, keepdim=True)
    return F.interpolate(x, size=(res, res), mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)


def run_recover(cfg: RecoverConfig) -> Path:
    _check(cfg)
    state = process_state()
    if state.num_processes > 1:
        raise StudioError("recover runs one process per IPC range: start one process per device with "
                          "--ipc-start/--ipc-end into the same --out instead of accelerate launch")
    teacher, meta = load_classifier(cfg.teacher)
    classes, res = meta["class_names"], meta["resolution"]
    channels = meta.get("channels", 3) if cfg.channels == "auto" else int(cfg.channels)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    man = _manifest(out, cfg, classes, meta)
    _write_manifest(out, man)
    end = cfg.ipc if cfg.ipc_end < 0 else min(cfg.ipc_end, cfg.ipc)
    per = cfg.classes_per_batch or len(classes)
    groups = [list(range(lo, min(lo + per, len(classes)))) for lo in range(0, len(classes), per)]
    units = [(i, g) for i in range(cfg.ipc_start, end) for g in groups]
    tcfg = TrainerConfig(steps=cfg.iterations, batch_size=1, lr=cfg.lr, lr_schedule="cosine", warmup_steps=0,
                         adam_beta1=0.5, adam_beta2=0.9, weight_decay=0.0, max_grad_norm=0.0, ema_decay=0.0,
                         mixed_precision=cfg.mixed_precision, checkpoint_every=cfg.checkpoint_every,
                         checkpoints_limit=1, log_every=cfg.iterations, seed=cfg.seed, resume="latest",
                         tracker="none", progress=False)
    generator = _Generator(cfg.init.split(":", 1)[1]) if cfg.init != "noise" else None
    folders = man["folders"]
    paths = lambda i, g: [out / folders[c] / f"ipc_{i:04d}.png" for c in g]  # noqa: E731
    bar = tqdm(units, desc=f"recover {out.name}", unit="unit")
    for ipc_id, group in bar:
        key = f"ipc{ipc_id:04d}_c{group[0]:04d}-{group[-1]:04d}"
        if all(p.is_file() for p in paths(ipc_id, group)):
            continue
        work = out / ".work" / key
        resumed = bool(list_checkpoints(work))
        init = _init_images(cfg, ipc_id, group, classes, res, channels, generator)
        method = Recovery(teacher, init, torch.tensor(group), cfg)
        t0 = time.perf_counter()
        result = train(method, tcfg, work)
        method.bn.remove()
        if result.interrupted:
            raise StudioError(f"recovery interrupted in unit {key}; rerun the same command to resume")
        # wall time per iteration (checkpoints included); not recorded for a resumed unit
        ms = None if resumed else round((time.perf_counter() - t0) * 1000 / cfg.iterations, 2)
        pixels = result.modules["images"]().detach().float().cpu()
        for p, img in zip(paths(ipc_id, group), to_unit_hwc(pixels)):
            save_png(Image.fromarray(to_uint8(img)), p, {"studio": json.dumps({"ipc": ipc_id, "cda": asdict(cfg)})})
        man["units"][key] = {**{k: round(v, 5) for k, v in method.last.items()}, "ms_per_iteration": ms}
        _write_manifest(out, man)
        shutil.rmtree(work, ignore_errors=True)
        bar.set_postfix({k: f"{v:.3f}" for k, v in method.last.items()})
    ms = [u["ms_per_iteration"] for u in man["units"].values() if u.get("ms_per_iteration") is not None]
    if ms:
        man["median_ms_per_iteration"] = statistics.median(ms)
        _write_manifest(out, man)
    with contextlib.suppress(OSError):  # only when empty: another IPC range may still be working
        (out / ".work").rmdir()
    return out


def load_distilled(folder, class_names: list[str], resolution: int, ipc: int = 0):
    """A recovered (or any class-folder) set, with labels in the teacher's class order; ``ipc`` > 0
    keeps the first ``ipc`` images of each class (file-name order: ipc_0000, ipc_0001, ...)."""
    from studio.data import load_image_folder
    from studio.data.captioned import CaptionedImages

    data = load_image_folder(folder, resolution=resolution)
    wanted = {folder_name(c): k for k, c in enumerate(class_names)}
    missing = [f for f in data.class_names if f not in wanted]
    if missing:
        raise StudioError(f"{folder}: class folders {missing[:3]} are not classes of the teacher "
                          f"({', '.join(wanted)})")
    remap = np.array([wanted[f] for f in data.class_names])
    keep = np.arange(len(data))
    if ipc > 0:
        counts = np.bincount(data.labels, minlength=len(data.class_names))
        if counts.min() < ipc:
            raise StudioError(f"{folder}: a class folder holds {counts.min()} images, fewer than --ipc {ipc}")
        keep = np.concatenate([np.flatnonzero(data.labels == k)[:ipc] for k in range(len(data.class_names))])
    return CaptionedImages(data.images[keep], remap[data.labels[keep]], [data.captions[i] for i in keep],
                           list(class_names), data.name)
