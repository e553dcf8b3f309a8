"""The ``studio ict ...`` commands (registered through the ``studio.commands`` entry point).

``ict train`` runs through the driver (``studio.training.driver``). Layout of OUT: the exported
``ConsistencyModelPipeline`` (model_index.json, unet/, scheduler/), ``studio_model.json``,
``config.json`` (resolved config) and ``train/`` (checkpoints, logs); ``--resume latest``
continues an interrupted run. The saved UNet holds the EMA weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from diffusers import UNet2DModel

from studio import StudioError
from studio.cli.schema import validate
from studio.data import load_dataset
from studio.images import make_grid, save_png, to_unit_hwc
from studio.training.driver import Stage, run

from consistency import edm
from consistency.config import ECTConfig, EDMConfig, EDMSampleConfig, ICTConfig, ICTSampleConfig
from consistency.ect import STAGES, ECTObjective
from consistency.model import Precond, build_unet, load_model
from consistency.objective import ICTObjective
from consistency.sampling import default_sigmas, sample


def ict_precision(choice: str) -> str:
    """iCT's precision: ``auto`` means fp32 here, not the loop's bf16-on-GPU, and fp16 is refused.

    iCT learns from the small difference f(x + s_{i+1} z, s_{i+1}) - f(x + s_i z, s_i). Under bf16
    autocast its rounding error, measured against float64 on the seeded SMALL_UNET
    (``benchmarks/ict_bf16_signal.py``), is a median 0.4 % of the difference at N = 11, 5 % at
    N = 161 and 22 % at N = 1281, against 2e-5 in fp32. bf16 stays available on request."""
    if choice == "fp16":
        raise StudioError("--mixed-precision fp16 is not supported for iCT: lambda = 1/(sigma_{i+1} - sigma_i) "
                          "reaches about 2.6e4 and overflows half precision; use bf16 or no")
    return "no" if choice == "auto" else choice


def train_ict(cfg: ICTConfig) -> Path | None:
    """Train from data; the export is a ``ConsistencyModelPipeline`` holding the EMA weights."""
    cfg = replace(cfg, train=replace(cfg.train, mixed_precision=ict_precision(cfg.train.mixed_precision)))

    def build():
        data = load_dataset(cfg.dataset, data_dir=cfg.data_dir or None, resolution=32, limit=cfg.limit or None)
        if cfg.conditional and not data.class_names:
            raise StudioError(f"{cfg.dataset} has no class labels; drop --conditional")
        unet = build_unet(len(data.class_names) if cfg.conditional else 0, cfg.dropout, seed=cfg.train.seed)
        precond = Precond(cfg.sigma_data or edm.measured_sigma_data(data), cfg.noise_scale)
        return ICTObjective(unet, data, cfg.train.steps, cfg.conditional, cfg.s0, cfg.s1, dataset=cfg.dataset,
                            precond=precond, flip=cfg.flip)

    return run(cfg, [Stage("train", build, cfg.train)], outputs=edm.OUTPUTS)


def train_edm(cfg: EDMConfig) -> Path | None:
    """The EDM diffusion model from data (``consistency.edm``); sigma_data 0 is measured from the data."""

    def build():
        data = load_dataset(cfg.dataset, data_dir=cfg.data_dir or None, resolution=32, limit=cfg.limit or None)
        if cfg.conditional and not data.class_names:
            raise StudioError(f"{cfg.dataset} has no class labels; drop --conditional")
        precond = Precond(cfg.sigma_data or edm.measured_sigma_data(data), cfg.noise_scale)
        unet = build_unet(len(data.class_names) if cfg.conditional else 0, cfg.dropout, seed=cfg.train.seed)
        return edm.EDMObjective(unet, data, precond, cfg.conditional, cfg.flip, dataset=cfg.dataset)

    return run(cfg, [Stage("train", build, cfg.train)], outputs=edm.OUTPUTS)


def tune_ect(cfg: ECTConfig) -> Path | None:
    """ECT from an EDM model folder: the same UNet, parameterisation and classes; the export is a consistency model."""
    cfg = replace(cfg, train=replace(cfg.train, mixed_precision=ict_precision(cfg.train.mixed_precision)))

    def build():
        _, info = load_model(cfg.init, ("edm",))
        unet = UNet2DModel.from_pretrained(str(Path(cfg.init) / "unet"), use_safetensors=True, dropout=cfg.dropout)
        data = load_dataset(cfg.dataset, data_dir=cfg.data_dir or None, resolution=32, limit=cfg.limit or None)
        classes = info.get("class_names") or []
        if classes and list(data.class_names) != classes:
            raise StudioError(f"{cfg.init} is conditional on {len(classes)} classes and {cfg.dataset} does not have "
                              "the same ones; tune on the pretraining's data")
        return ECTObjective(unet.train(), data, Precond.of(info), cfg.double_every or max(1, cfg.train.steps // STAGES),
                            cfg.q, cfg.k, cfg.b, cfg.huber_c, classes, cfg.flip, dataset=cfg.dataset)

    return run(cfg, [Stage("train", build, cfg.train)], outputs=edm.OUTPUTS)


def class_grid_labels(classes: list[str], num: int, class_label: int) -> list[int] | None:
    """One label per image: ``class_label`` for all, or image k gets k mod C (None: unconditional)."""
    if not classes:
        return None
    return [class_label] * num if class_label >= 0 else [k % len(classes) for k in range(num)]


def save_samples(images, cfg, classes: list[str], extra: dict) -> Path:
    meta = {"parameters": json.dumps({**asdict(cfg), **extra})}
    nrow = len(classes) if classes and cfg.class_label < 0 else None
    return save_png(make_grid(to_unit_hwc(images), nrow=nrow), cfg.out, meta)


def run_edm_sample(cfg: EDMSampleConfig) -> Path:
    validate(cfg)
    unet, info = load_model(cfg.model, ("edm",))
    classes = info.get("class_names") or []
    if cfg.class_label >= len(classes) > 0:
        raise StudioError(f"--class-label {cfg.class_label} is out of range: the model has {len(classes)} classes")
    images = edm.sample(unet, Precond.of(info), cfg.num, cfg.seed, cfg.steps,
                        class_grid_labels(classes, cfg.num, cfg.class_label), heun=not cfg.euler)
    return save_samples(images, cfg, classes, {})


def run_ict_sample(cfg: ICTSampleConfig) -> Path:
    validate(cfg)
    unet, info = load_model(cfg.model, ("consistency",))
    classes = info.get("class_names") or []
    if cfg.class_label >= len(classes) > 0:
        raise StudioError(f"--class-label {cfg.class_label} is out of range: the model has {len(classes)} classes")
    sigmas = list(cfg.sigmas) or default_sigmas(cfg.steps)
    images = sample(unet, cfg.num, cfg.seed, sigmas, class_grid_labels(classes, cfg.num, cfg.class_label),
                    precond=Precond.of(info))
    return save_samples(images, cfg, classes, {"sigmas": sigmas})


def commands() -> dict:
    return {
        ("ict", "train"): (ICTConfig, train_ict, "Improved Consistency Training from data (iCT)"),
        ("ict", "sample"): (ICTSampleConfig, run_ict_sample, "1-, 2- or multistep samples of a consistency model"),
        ("ict", "tune"): (ECTConfig, tune_ect, "Easy Consistency Tuning (ECT) from an EDM diffusion model"),
        ("edm", "train"): (EDMConfig, train_edm, "an EDM diffusion model from data (ECT's starting point)"),
        ("edm", "sample"): (EDMSampleConfig, run_edm_sample, "Heun (or Euler) samples of an EDM model"),
    }
