"""``studio dmd train``: a one-step generator distilled by DMD2 from a teacher, through the driver.

Layout of OUT: the one-step pipeline (plain diffusers ``StableDiffusionPipeline``; ``studio sample OUT`` and
plain diffusers give the same images), ``config.json``, ``studio_model.json`` (kind ``one-step-student``,
method ``dmd2``) and ``train/`` (checkpoints of both networks, TensorBoard logs).
"""

from __future__ import annotations

from pathlib import Path

from studio import StudioError
from studio.data import load_dataset
from studio.models.backbone import load_pipeline
from studio.training.driver import Stage, run

from distill.dmd.config import DMDConfig
from distill.dmd.objective import DMDObjective


def dmd_method(cfg: DMDConfig) -> DMDObjective:
    if cfg.t_min >= cfg.t_max:
        raise StudioError(f"--t-min {cfg.t_min} must be below --t-max {cfg.t_max}")
    teacher = load_pipeline(cfg.teacher)
    pipe = load_pipeline(cfg.init or cfg.teacher)
    res = teacher.unet.config.sample_size * teacher.vae_scale_factor
    if pipe.unet.config.sample_size != teacher.unet.config.sample_size:
        raise StudioError(f"--init {cfg.init} makes {pipe.unet.config.sample_size}-pixel latents, the teacher "
                          f"{teacher.unet.config.sample_size}: they must match")
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir or None, resolution=res, limit=cfg.limit or None)
    n = teacher.scheduler.config.num_train_timesteps
    info = dict(kind="one-step-student", steps=1, guidance=1.0, method="dmd2", init=cfg.init or cfg.teacher,
                teacher=cfg.teacher, gan=cfg.gan)
    return DMDObjective(pipe, teacher, data, cfg.real_guidance, cfg.update_ratio,
                        (int(cfg.t_min * n), min(int(cfg.t_max * n), n - 1)), cfg.gan, cfg.gan_gen_weight,
                        cfg.gan_cls_weight, info, cfg.memory, cfg.train.seed)


def train_dmd(cfg: DMDConfig) -> Path | None:
    """DMD2 one-step generator; returns the pipeline directory (None if interrupted)."""
    return run(cfg, [Stage("train", lambda: dmd_method(cfg), cfg.train)])


def commands() -> dict:
    return {("dmd", "train"): (DMDConfig, train_dmd, "distill a teacher into a one-step generator with DMD2")}
