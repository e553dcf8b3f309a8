"""Settings of the ``studio reflow`` commands (the CLI is generated from these dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from studio.training.config import TrainerConfig


@dataclass
class PairsConfig:
    teacher: str = field(default="", metadata={"help": "teacher pipeline: directory or hub id"})
    prompts: str = field(default="fashion-mnist", metadata={
        "help": "a prompt file (one per line) or a dataset (fashion-mnist[:split], image folder): its captions"})
    num: int = field(default=8192, metadata={"help": "number of (noise, latent) pairs"})
    steps: int = 25
    solver: str = field(default="dpmsolver", metadata={"help": "diffusers solver of a teacher; flow models: euler"})
    guidance: float = 5.0
    seed: int = field(default=0, metadata={"help": "pair k uses noise seed seed + k"})
    shard_size: int = field(default=256, metadata={"help": "pairs per safetensors shard"})
    batch_size: int = 64
    data_dir: str = ""
    dtype: str = "float32"
    device: str = field(default="", metadata={"help": "default: this process's accelerator device"})
    out: str = "runs/pairs"


def _reflow_train_defaults() -> TrainerConfig:
    return TrainerConfig(steps=3000, batch_size=64, lr=3e-4, warmup_steps=100, lr_schedule="cosine",
                         ema_decay=0.999, checkpoint_every=250, log_every=50)


def _distill_train_defaults() -> TrainerConfig:
    return TrainerConfig(steps=2000, batch_size=64, lr=1e-4, warmup_steps=100, lr_schedule="cosine",
                         ema_decay=0.999, checkpoint_every=250, log_every=50)


@dataclass
class ReflowTrainConfig:
    init: str = field(default="", metadata={"help": "teacher pipeline whose UNet initialises the 2-RF"})
    pairs: str = field(default="", metadata={"help": "pairs directory from `studio reflow pairs`"})
    out: str = "runs/2rf"
    caption_dropout: float = field(default=0.1, metadata={"help": "share of captions replaced by '' (for CFG)"})
    train: TrainerConfig = field(default_factory=_reflow_train_defaults, metadata={"flatten": True})


@dataclass
class DistillConfig:
    init: str = field(default="", metadata={"help": "2-RF pipeline that initialises the student"})
    pairs: str = field(default="", metadata={"help": "pairs generated with the 2-RF as teacher"})
    out: str = "runs/student"
    loss: Literal["l2", "huber", "lpips"] = field(default="l2", metadata={
        "help": "l2 on latents, pseudo-Huber on latents, or LPIPS on VAE-decoded images (needs VGG weights)"})
    lpips_weights: str = field(default="", metadata={"help": "VGG16 ImageNet state dict for --loss lpips "
                                                             "(default: torchvision's hub cache file)"})
    train: TrainerConfig = field(default_factory=_distill_train_defaults, metadata={"flatten": True})


@dataclass
class StraightnessConfig:
    model: str = field(default="", metadata={"positional": True, "help": "pipeline directory (teacher or flow)"})
    prompts: str = field(default="fashion-mnist", metadata={"help": "prompt file or dataset (its captions)"})
    num: int = field(default=64, metadata={"help": "trajectories in the fixed batch"})
    steps: int = 25
    guidance: float = 1.0
    seed: int = 0
    data_dir: str = ""
    out: str = field(default="", metadata={"help": "also write the result JSON here"})
