"""``studio ict train`` and ``studio ict sample``.

Layout of OUT: the exported ``ConsistencyModelPipeline`` (model_index.json, unet/, scheduler/),
``studio_model.json``, ``config.json`` (resolved config) and ``train/`` (checkpoints, logs);
``--resume latest`` continues an interrupted run. The saved UNet holds the EMA weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from diffusers import ConsistencyModelPipeline

from studio import StudioError
from studio.models.backbone import load_pipeline, save_pipeline
from studio.data import load_dataset
from studio.devices import process_state
from studio.images import make_grid, save_png, to_unit_hwc
from studio.models.model_info import read_model_info, write_model_info
from studio.training.config import validate
from studio.training.driver import write_resolved_config
from studio.training.loop import train

from consistency.config import ICTConfig, ICTSampleConfig
from consistency.model import build_unet
from consistency.objective import ICTObjective
from consistency.recipe import discretization_steps
from consistency.sampling import default_sigmas, export_pipeline, sample


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
    cfg = replace(cfg, train=replace(cfg.train, mixed_precision=ict_precision(cfg.train.mixed_precision)))
    validate(cfg.train)
    if not 0.0 <= cfg.dropout < 1.0:
        raise StudioError(f"--dropout must be in [0, 1), got {cfg.dropout}")
    state = process_state()
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir or None, resolution=32, limit=cfg.limit or None)
    num_classes = len(data.class_names) if cfg.conditional else 0
    if cfg.conditional and not num_classes:
        raise StudioError(f"{cfg.dataset} has no class labels; drop --conditional")
    out = Path(cfg.out)
    if state.is_main_process:
        write_resolved_config(out, cfg)
    unet = build_unet(num_classes, cfg.dropout, seed=cfg.train.seed)
    objective = ICTObjective(unet, data, cfg.train.steps, cfg.conditional, cfg.s0, cfg.s1)
    result = train(objective, cfg.train, out / "train")
    if result.interrupted:
        return None
    final_n = discretization_steps(cfg.train.steps - 1, cfg.train.steps, cfg.s0, cfg.s1)
    if state.is_main_process:
        save_pipeline(export_pipeline(result.modules["unet"].eval().to("cpu"), final_n), out)
        write_model_info(out, "consistency", steps=1, guidance=0.0, class_names=list(data.class_names)
                         if num_classes else [], num_train_timesteps=final_n, dataset=cfg.dataset)
    state.wait_for_everyone()
    return out


def run_ict_sample(cfg: ICTSampleConfig) -> Path:
    if not cfg.model:
        raise StudioError("give the model: studio ict sample MODEL_DIR")
    if cfg.num < 1:
        raise StudioError(f"--num must be at least 1, got {cfg.num}")
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
