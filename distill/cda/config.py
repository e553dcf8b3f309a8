"""Settings of ``studio cda squeeze | recover | eval`` (the CLI is generated from these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from studio.cli.schema import option
from studio.training.config import TrainerConfig

from distill.cda.augment import MIX_MODES
from distill.cda.curriculum import SCHEDULES


def _squeeze_defaults() -> TrainerConfig:
    # SRe2L's small-dataset squeeze trains with SGD for 200 epochs; here AdamW with a cosine
    # schedule reaches a usable teacher in a few CPU epochs. No EMA: BN statistics are buffers.
    return TrainerConfig(steps=3000, batch_size=128, lr=2e-3, lr_schedule="cosine", warmup_steps=100,
                         weight_decay=5e-4, max_grad_norm=0.0, ema_decay=0.0, checkpoint_every=500)


def _eval_defaults() -> TrainerConfig:
    # SRe2L relabel (small datasets): AdamW lr 1e-3, weight decay 0.01, cosine schedule.
    # 1,000 steps is a quick default; a student on a few images keeps improving far longer
    # (Fashion-MNIST IPC 10: 55 % at 500 steps, 86.6 % at 16,000; docs/cda.md, the student-length study).
    return TrainerConfig(steps=1000, batch_size=100, lr=1e-3, lr_schedule="cosine", weight_decay=0.01,
                         max_grad_norm=0.0, ema_decay=0.0, checkpoint_every=500, tracker="none")


@dataclass
class SqueezeConfig:
    """Settings of studio cda squeeze."""

    dataset: str = option("fashion-mnist", "fashion-mnist or a class-folder image set")
    data_dir: str = option("", "folder of the Fashion-MNIST IDX files")
    test_dataset: str = option("", "held-out set for top-1 (default: fashion-mnist:test for fashion-mnist, none "
                                   "for a folder)")
    resolution: int = option(32, ge=8)
    arch: str = option("resnet18-small", "resnet18-small or torchvision:NAME")
    width: int = option(64, "resnet18-small base channels (64: ResNet-18; a multiple of 4)", ge=4)
    weights: str = option("", "a local .safetensors state dict: skip training, evaluate and save it as the teacher")
    out: str = "runs/cda/teacher"
    train: TrainerConfig = option(factory=_squeeze_defaults, flatten=True)


@dataclass
class RecoverConfig:
    """Settings of studio cda recover."""

    teacher: str = option(help="teacher directory from `studio cda squeeze`")
    ipc: int = option(10, "images per class", ge=1)
    ipc_start: int = option(0, "first IPC index this process synthesises", ge=0)
    ipc_end: int = option(-1, "one past the last IPC index (-1: --ipc)", ge=-1)
    iterations: int = option(1000, ge=1)
    curriculum: Literal[SCHEDULES] = option(
        "cosine", "none (SRe2L), step, linear or cosine")
    milestone: float = option(1.0, "fraction of the iterations the curriculum spans", ge=0, le=1)
    lr: float = option(0.25, "Adam lr on the pixels (SRe2L/CDA small datasets: 0.25)", gt=0)
    r_bn: float = option(0.01, "weight of the BN-statistics loss", ge=0)
    first_bn_multiplier: float = option(10.0, ge=0)
    jitter: int = option(4, "random roll of up to this many pixels", ge=0)
    classes_per_batch: int = option(0, "0: all classes in one batch", ge=0)
    channels: Literal["auto", "1", "3"] = option("auto", "auto (1 if the teacher's data is grayscale), 1 or 3")
    init: str = option("noise", "noise, or generator:PIPELINE_DIR to start from a studio model's "
                                "'a photo of a {class}' images")
    seed: int = 0
    mixed_precision: Literal["auto", "no", "bf16"] = "auto"
    checkpoint_every: int = option(200, ge=1)
    out: str = "runs/cda/ipc10"


@dataclass
class EvalConfig:
    """Settings of studio cda eval."""

    data: str = option(help="a distilled image folder, 'random' (a real subset with --ipc per class) or 'full' "
                            "(the whole training set)")
    teacher: str = option(help="teacher directory (soft labels)")
    dataset: str = option("fashion-mnist", "real training set, for random/full")
    data_dir: str = ""
    test_dataset: str = option("", "held-out set (default: fashion-mnist:test)")
    ipc: int = option(0, "images per class: the size of the random subset (required there); for a folder, only "
                         "its first N per class (0: all)", ge=0)
    arch: str = option("", "student architecture (default: the teacher's)")
    width: int = option(0, "student width (0: the teacher's)", ge=0)
    temperature: float = option(20.0, "softmax temperature of the KL soft-label loss", gt=0)
    mix: Literal[MIX_MODES] = option(
        "both", "none, mixup, cutmix, or both (one of the two per batch)")
    crop_min_scale: float = option(0.08, "RandomResizedCrop lower area bound", gt=0, le=1)
    out: str = "runs/cda/eval"
    train: TrainerConfig = option(factory=_eval_defaults, flatten=True)
