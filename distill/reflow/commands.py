"""The ``studio reflow ...`` commands (registered through the ``studio.commands`` entry point).

``reflow train`` (2-rectified flow) and ``reflow distill`` (one-step student) load an initial
pipeline and train its UNet on a pairs directory through the driver (``studio.training.driver``):
the export is a plain diffusers ``StableDiffusionPipeline`` whose scheduler is the flow pairing
of ``studio.diffusion.flow``, plus ``studio_model.json``. Layout of OUT: the pipeline,
``config.json``, ``studio_model.json``, ``train/`` (checkpoints and TensorBoard logs).
"""

from __future__ import annotations

from pathlib import Path

from studio import StudioError
from studio.models.backbone import load_pipeline
from studio.training.driver import Stage, run

from distill.reflow.config import DistillConfig, PairsConfig, ReflowTrainConfig, StraightnessConfig
from distill.reflow.losses import make_distance
from distill.reflow.objective import DistillObjective, ReflowObjective
from distill.reflow.pairs import PairsDataset, generate_pairs
from distill.reflow.straightness import run_straightness


def _pipe_and_pairs(cfg):
    pairs = PairsDataset(cfg.pairs)
    pipe = load_pipeline(cfg.init)
    shape = tuple(pairs.shards[0]["x0"].shape[1:])
    want = (pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
    if shape != want:
        raise StudioError(f"pairs in {cfg.pairs} have latent shape {shape}, but {cfg.init} expects {want}")
    return pipe, pairs


def reflow_method(cfg: ReflowTrainConfig) -> ReflowObjective:
    info = dict(kind="2-rectified-flow", steps=cfg.sample_steps, guidance=cfg.sample_guidance, init=cfg.init,
                pairs=cfg.pairs)
    return ReflowObjective(*_pipe_and_pairs(cfg), cfg.caption_dropout, info, cfg.memory, cfg.train.seed)


def student_method(cfg: DistillConfig) -> DistillObjective:
    pipe, pairs = _pipe_and_pairs(cfg)
    info = dict(kind="one-step-student", steps=1, guidance=1.0, init=cfg.init, pairs=cfg.pairs, loss=cfg.loss)
    return DistillObjective(pipe, pairs, make_distance(cfg.loss, pipe.vae, cfg.lpips_weights), info, cfg.memory,
                            cfg.train.seed)


def train_reflow(cfg: ReflowTrainConfig) -> Path | None:
    """2-RF from a teacher's couplings; returns the pipeline directory (None if interrupted)."""
    return run(cfg, [Stage("train", lambda: reflow_method(cfg), cfg.train)])


def train_student(cfg: DistillConfig) -> Path | None:
    """One-step student from a 2-RF's couplings; returns the pipeline directory (None if interrupted)."""
    return run(cfg, [Stage("train", lambda: student_method(cfg), cfg.train)])


def commands() -> dict:
    return {
        ("reflow", "pairs"): (PairsConfig, generate_pairs, "teacher couplings (noise, ODE endpoint, prompt) as shards"),
        ("reflow", "train"): (ReflowTrainConfig, train_reflow, "train a 2-rectified flow on teacher couplings"),
        ("reflow", "distill"): (DistillConfig, train_student, "distill a 2-rectified flow into a one-step student"),
        ("reflow", "straightness"): (StraightnessConfig, run_straightness, "straightness S of a model's ODE"),
    }
