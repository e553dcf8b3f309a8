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

from diffusers import ConsistencyModelPipeline

from studio import StudioError
from studio.cli.schema import validate
from studio.data import load_dataset
from studio.images import make_grid, save_png, to_unit_hwc
from studio.models.backbone import load_pipeline
from studio.models.model_info import read_model_info
from studio.training.driver import Stage, run

from consistency.config import ICTConfig, ICTSampleConfig
from consistency.model import build_unet
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
        return ICTObjective(unet, data, cfg.train.steps, cfg.conditional, cfg.s0, cfg.s1, dataset=cfg.dataset)

    return run(cfg, [Stage("train", build, cfg.train)])


def run_ict_sample(cfg: ICTSampleConfig) -> Path:
    validate(cfg)
    pipe = load_pipeline(cfg.model, pipeline_cls=ConsistencyModelPipeline)
    classes = read_model_info(cfg.model).get("class_names") or []
    labels = None
    if classes:
        labels = [cfg.class_label] * cfg.num if cfg.class_label >= 0 else [k % len(classes) for k in range(cfg.num)]
    sigmas = list(cfg.sigmas) or default_sigmas(cfg.steps)
    images = sample(pipe.unet, cfg.num, cfg.seed, sigmas, labels)
    images = to_unit_hwc(images)
    meta = {"parameters": json.dumps({**asdict(cfg), "sigmas": sigmas})}
    return save_png(make_grid(images, nrow=len(classes) if classes and cfg.class_label < 0 else None), cfg.out, meta)


def commands() -> dict:
    return {
        ("ict", "train"): (ICTConfig, train_ict, "Improved Consistency Training from data (iCT)"),
        ("ict", "sample"): (ICTSampleConfig, run_ict_sample, "1-, 2- or multistep samples of a consistency model"),
    }
