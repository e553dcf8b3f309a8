"""Settings of the ``studio reflow`` commands (the CLI is generated from these dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from studio.cli.schema import option
from studio.diffusion.sampling import Solver
from studio.models.backbone import Dtype
from studio.models.levers import MemoryLevers
from studio.training.config import TrainerConfig


@dataclass
class PairsConfig:
    """Settings of studio reflow pairs."""

    teacher: str = option(help="teacher pipeline: directory or hub id")
    prompts: str = option("fashion-mnist", "a prompt file (one per line) or a dataset (fashion-mnist[:split], "
                                           "image folder): its captions")
    num: int = option(8192, "number of (noise, latent) pairs", ge=1)
    steps: int = option(25, "teacher ODE steps", ge=1)
    solver: Solver = option("dpmsolver", "a deterministic solver of the teacher (flow models: euler); "
                                         "auto: the pipeline's own scheduler")
    guidance: float | None = option(None, "classifier-free guidance of the teacher (<= 1: none; default: the "
                                          "teacher's recommended, its studio_model.json, or SD's 5)", ge=0)
    seed: int = option(0, "pair k uses noise seed seed + k", ge=0)
    shard_size: int = option(256, "pairs per safetensors shard", ge=1)
    batch_size: int = option(64, ge=1)
    data_dir: str = ""
    dtype: Dtype = option("float32", "precision the teacher samples in")
    store_dtype: Literal["float16", "float32"] = option("float16", "precision the pairs are stored in (recorded in "
                                                                   "the manifest; training reads both)")
    device: str = option("", "default: this process's accelerator device")
    out: str = "runs/pairs"


def _reflow_train_defaults() -> TrainerConfig:
    return TrainerConfig(steps=3000, batch_size=64, lr=3e-4, warmup_steps=100, lr_schedule="cosine",
                         ema_decay=0.999, checkpoint_every=250, log_every=50)


def _distill_train_defaults() -> TrainerConfig:
    return TrainerConfig(steps=2000, batch_size=64, lr=1e-4, warmup_steps=100, lr_schedule="cosine",
                         ema_decay=0.999, checkpoint_every=250, log_every=50)


@dataclass
class ReflowTrainConfig:
    """Settings of studio reflow train."""

    init: str = option(help="teacher pipeline whose UNet initialises the 2-RF")
    pairs: str = option(help="pairs directory from `studio reflow pairs`")
    out: str = "runs/2rf"
    caption_dropout: float = option(0.1, "share of captions replaced by '' (for CFG)", ge=0, lt=1)
    sample_steps: int = option(25, "recommended Euler steps, written to studio_model.json", ge=1)
    sample_guidance: float = option(1.0, "recommended guidance, written to studio_model.json (InstaFlow: 1.5 on "
                                         "SD; 1.0 is best on the built-in teacher)", ge=0)
    memory: MemoryLevers = option(factory=MemoryLevers, flatten=True)
    train: TrainerConfig = option(factory=_reflow_train_defaults, flatten=True)


@dataclass
class DistillConfig:
    """Settings of studio reflow distill."""

    init: str = option(help="2-RF pipeline that initialises the student")
    pairs: str = option(help="pairs generated with the 2-RF as teacher")
    out: str = "runs/student"
    loss: Literal["l2", "huber", "lpips"] = option(
        "l2", "l2 on latents, pseudo-Huber on latents, or LPIPS on VAE-decoded images (needs VGG weights)")
    lpips_weights: str = option("", "VGG16 ImageNet state dict for --loss lpips (default: torchvision's hub cache "
                                    "file)")
    memory: MemoryLevers = option(factory=MemoryLevers, flatten=True)
    train: TrainerConfig = option(factory=_distill_train_defaults, flatten=True)


@dataclass
class StraightnessConfig:
    """Settings of studio reflow straightness."""

    model: str = option(help="pipeline directory (teacher or flow)", positional=True)
    prompts: str = option("fashion-mnist", "prompt file or dataset (its captions)")
    num: int = option(64, "trajectories in the fixed batch", ge=1)
    steps: int = option(25, ge=1)
    guidance: float = option(1.0, ge=0)
    seed: int = option(0, ge=0)
    data_dir: str = ""
    out: str = option("", "also write the result JSON here")
