"""The shared training loop's settings, and the LR schedule they describe."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from studio import StudioError


@dataclass
class TrainerConfig:
    steps: int = field(default=1000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=64, metadata={"help": "samples per process per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    lr: float = 1e-4
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = 0
    optimizer: Literal["adamw", "radam"] = "adamw"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping; 0 disables"})
    ema_decay: float = field(default=0.999, metadata={"help": "0 disables the EMA"})
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = field(
        default="auto", metadata={"help": "auto: bf16 on a GPU that supports it, else fp32"})
    checkpoint_every: int = 500
    checkpoints_limit: int = field(default=3, metadata={"help": "keep this many newest checkpoints"})
    log_every: int = 50
    seed: int = 0
    resume: str = field(default="", metadata={"help": "'latest' or a checkpoint directory"})
    tracker: Literal["tensorboard", "none"] = "tensorboard"
    progress: bool = field(default=True, metadata={"help": "tqdm progress bar on the main process"})


def validate(cfg: TrainerConfig) -> None:
    """One-line errors for settings the loop cannot run with."""
    for name in ("steps", "batch_size", "grad_accum", "checkpoint_every", "log_every"):
        if getattr(cfg, name) < 1:
            raise StudioError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if cfg.lr <= 0 or cfg.max_grad_norm < 0 or not 0 <= cfg.ema_decay < 1:
        raise StudioError("--lr must be > 0, --max-grad-norm >= 0 and --ema-decay in [0, 1)")


def lr_factor(cfg: TrainerConfig, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then constant, cosine or linear decay to 0."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, max(0.0, (step - cfg.warmup_steps) / span))
    if cfg.lr_schedule == "cosine":
        return warm * 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.lr_schedule == "linear":
        return warm * (1.0 - progress)
    return warm


def resolve_mixed_precision(choice: str) -> str:
    import torch

    if choice != "auto":
        return choice
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
