"""``studio reflow train`` (2-rectified flow) and ``studio reflow distill`` (one-step student).

Both load an initial pipeline, train its UNet on a pairs directory with the shared loop
(``studio.training.loop``), and save a plain diffusers ``StableDiffusionPipeline`` whose scheduler is
the flow pairing of ``studio.diffusion.flow``, plus ``studio_model.json`` (kind, recommended steps and
guidance). Layout of OUT: the pipeline, ``config.json`` (resolved config), ``train/``
(checkpoints and TensorBoard logs). ``--resume latest`` continues an interrupted run.
"""

from __future__ import annotations

from pathlib import Path

from studio import StudioError
from studio.models.backbone import load_pipeline, save_pipeline
from studio.devices import process_state
from studio.diffusion.flow import flow_scheduler
from studio.models.model_info import write_model_info
from studio.training.config import validate
from studio.training.driver import write_resolved_config
from studio.training.loop import train

from distill.reflow.config import DistillConfig, ReflowTrainConfig
from distill.reflow.losses import make_distance
from distill.reflow.objectives import DistillObjective, ReflowObjective
from distill.reflow.pairs import PairsDataset


def _prepare(cfg, what: str):
    if not cfg.init:
        raise StudioError(f"give the pipeline to start from: studio reflow {what} --init DIR --pairs PAIRS_DIR")
    if not cfg.pairs:
        raise StudioError(f"give the pairs directory: studio reflow {what} --init DIR --pairs PAIRS_DIR")
    validate(cfg.train)
    pairs = PairsDataset(cfg.pairs)
    pipe = load_pipeline(cfg.init)
    shape = tuple(pairs.shards[0]["x0"].shape[1:])
    want = (pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
    if shape != want:
        raise StudioError(f"pairs in {cfg.pairs} have latent shape {shape}, but {cfg.init} expects {want}")
    state = process_state()
    if state.is_main_process:
        write_resolved_config(Path(cfg.out), cfg)
    return pipe, pairs, state


def _export(pipe, result, out: Path, state, kind: str, steps: int, guidance: float, **info) -> Path | None:
    if result.interrupted:
        return None
    pipe.unet = result.modules["unet"]
    pipe.scheduler = flow_scheduler()
    if state.is_main_process:
        save_pipeline(pipe.to("cpu"), out)
        write_model_info(out, kind, steps=steps, guidance=guidance, **info)
    state.wait_for_everyone()
    return out


def train_reflow(cfg: ReflowTrainConfig) -> Path | None:
    """2-RF from a teacher's couplings; returns the pipeline directory (None if interrupted)."""
    if not 0.0 <= cfg.caption_dropout < 1.0:
        raise StudioError(f"--caption-dropout must be in [0, 1), got {cfg.caption_dropout}")
    pipe, pairs, state = _prepare(cfg, "train")
    result = train(ReflowObjective(pipe, pairs, cfg.caption_dropout), cfg.train, Path(cfg.out) / "train")
    return _export(pipe, result, Path(cfg.out), state, "2-rectified-flow", steps=25, guidance=1.5,
                   init=cfg.init, pairs=cfg.pairs)


def train_student(cfg: DistillConfig) -> Path | None:
    """One-step student from a 2-RF's couplings; returns the pipeline directory (None if interrupted)."""
    pipe, pairs, state = _prepare(cfg, "distill")
    distance = make_distance(cfg.loss, pipe.vae, cfg.lpips_weights)
    result = train(DistillObjective(pipe, pairs, distance), cfg.train, Path(cfg.out) / "train")
    return _export(pipe, result, Path(cfg.out), state, "one-step-student", steps=1, guidance=1.0,
                   init=cfg.init, pairs=cfg.pairs, loss=cfg.loss)
