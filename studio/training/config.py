"""The shared training loop's settings, and the LR schedule they describe."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from studio.cli.schema import option


@dataclass
class TrainerConfig:
    """Options of the shared training loop, the same for every training command."""

    steps: int = option(1000, "optimizer steps (may grow on --resume, to extend a run)", ge=1)
    batch_size: int = option(64, "samples per process per micro-batch", ge=1)
    grad_accum: int = option(1, "micro-batches per optimizer step", ge=1)
    lr: float = option(1e-4, "learning rate (peak, after warm-up)", gt=0)
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = option(0, "linear LR warm-up steps", ge=0)
    optimizer: Literal["adamw", "radam", "adamw8bit"] = option(
        "adamw", "adamw8bit: bitsandbytes' 8-bit AdamW (optimizer state 2 bytes per weight instead of 8)")
    adam_beta1: float = option(0.9, ge=0, lt=1)
    adam_beta2: float = option(0.999, ge=0, lt=1)
    adam_eps: float = option(1e-8, gt=0)
    weight_decay: float = option(0.0, ge=0)
    max_grad_norm: float = option(1.0, "gradient clipping; 0 disables", ge=0)
    ema_decay: float = option(0.999, "EMA of the weights; 0 disables", ge=0, lt=1)
    ema_device: Literal["auto", "cpu"] = option("auto", "where the EMA is kept: auto, beside the weights; cpu, in "
                                                        "host memory (saves GPU memory, costs a copy per step)")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = option(
        "auto", "auto: bf16 on a GPU that supports it, else fp32")
    checkpoint_every: int = option(500, "steps between checkpoints", ge=1)
    checkpoints_limit: int = option(3, "keep this many newest checkpoints (0: all)", ge=0)
    log_every: int = option(50, "steps between log lines", ge=1)
    seed: int = option(0, "seed of the data order and of every random draw")
    resume: str = option("", "'latest' or a checkpoint directory: continue that run (its settings must match)")
    overwrite: bool = option(False, "replace a run already in --out (deletes what a studio run wrote there)")
    tracker: Literal["tensorboard", "none"] = "tensorboard"
    progress: bool = option(True, "tqdm progress bar on the main process")


# may differ between a run and its resume (fields of TrainerConfig and MemoryLevers): they change when and
# how a run reports, saves or exports, or where it keeps the EMA, not what it learns
RESUMABLE = ("steps", "checkpoint_every", "checkpoints_limit", "log_every", "resume", "overwrite", "tracker",
             "progress", "ema_device", "lora_export")


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
