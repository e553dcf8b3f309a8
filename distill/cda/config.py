"""Settings of ``studio cda squeeze | recover | eval`` (the CLI is generated from these)."""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.training.config import TrainerConfig


def _squeeze_defaults() -> TrainerConfig:
    # SRe2L's small-dataset squeeze trains with SGD for 200 epochs; here AdamW with a cosine
    # schedule reaches a usable teacher in a few CPU epochs. No EMA: BN statistics are buffers.
    return TrainerConfig(steps=3000, batch_size=128, lr=2e-3, lr_schedule="cosine", warmup_steps=100,
                         weight_decay=5e-4, max_grad_norm=0.0, ema_decay=0.0, checkpoint_every=500)


def _eval_defaults() -> TrainerConfig:
    # SRe2L relabel (small datasets): AdamW lr 1e-3, weight decay 0.01, cosine schedule.
    # 1,000 steps is a quick default; a student on a few images keeps improving far longer
    # (Fashion-MNIST IPC 10: 55 % at 500 steps, 86.6 % at 16,000; see the README's CDA study).
    return TrainerConfig(steps=1000, batch_size=100, lr=1e-3, lr_schedule="cosine", weight_decay=0.01,
                         max_grad_norm=0.0, ema_decay=0.0, checkpoint_every=500, tracker="none")


@dataclass
class SqueezeConfig:
    dataset: str = field(default="fashion-mnist", metadata={"help": "fashion-mnist or a class-folder image set"})
    data_dir: str = field(default="", metadata={"help": "folder of the Fashion-MNIST IDX files"})
    test_dataset: str = field(default="", metadata={"help": "held-out set for top-1 (default: fashion-mnist:test "
                                                            "for fashion-mnist, none for a folder)"})
    resolution: int = 32
    arch: str = field(default="resnet18-small", metadata={"help": "resnet18-small or torchvision:NAME"})
    width: int = field(default=64, metadata={"help": "resnet18-small base channels (64: ResNet-18)"})
    weights: str = field(default="", metadata={"help": "a local .safetensors state dict: skip training, "
                                                       "evaluate and save it as the teacher"})
    out: str = "runs/cda/teacher"
    train: TrainerConfig = field(default_factory=_squeeze_defaults, metadata={"flatten": True})


@dataclass
class RecoverConfig:
    teacher: str = field(default="", metadata={"help": "teacher directory from `studio cda squeeze`"})
    ipc: int = field(default=10, metadata={"help": "images per class"})
    ipc_start: int = field(default=0, metadata={"help": "first IPC index this process synthesises"})
    ipc_end: int = field(default=-1, metadata={"help": "one past the last IPC index (-1: --ipc)"})
    iterations: int = 1000
    curriculum: str = field(default="cosine", metadata={"help": "none (SRe2L), step, linear or cosine"})
    milestone: float = field(default=1.0, metadata={"help": "fraction of the iterations the curriculum spans"})
    lr: float = field(default=0.25, metadata={"help": "Adam lr on the pixels (SRe2L/CDA small datasets: 0.25)"})
    r_bn: float = field(default=0.01, metadata={"help": "weight of the BN-statistics loss"})
    first_bn_multiplier: float = 10.0
    jitter: int = field(default=4, metadata={"help": "random roll of up to this many pixels"})
    classes_per_batch: int = field(default=0, metadata={"help": "0: all classes in one batch"})
    channels: str = field(default="auto", metadata={"help": "auto (1 if the teacher's data is grayscale), 1 or 3"})
    init: str = field(default="noise", metadata={"help": "noise, or generator:PIPELINE_DIR to start from a "
                                                         "studio model's 'a photo of a {class}' images"})
    seed: int = 0
    mixed_precision: str = field(default="auto", metadata={"help": "auto, no, bf16"})
    checkpoint_every: int = 200
    out: str = "runs/cda/ipc10"


@dataclass
class EvalConfig:
    data: str = field(default="", metadata={"help": "a distilled image folder, 'random' (a real subset with "
                                                    "--ipc per class) or 'full' (the whole training set)"})
    teacher: str = field(default="", metadata={"help": "teacher directory (soft labels)"})
    dataset: str = field(default="fashion-mnist", metadata={"help": "real training set, for random/full"})
    data_dir: str = ""
    test_dataset: str = field(default="", metadata={"help": "held-out set (default: fashion-mnist:test)"})
    ipc: int = field(default=0, metadata={"help": "images per class: the size of the random subset (required "
                                                  "there); for a folder, only its first N per class (0: all)"})
    arch: str = field(default="", metadata={"help": "student architecture (default: the teacher's)"})
    width: int = field(default=0, metadata={"help": "student width (0: the teacher's)"})
    temperature: float = field(default=20.0, metadata={"help": "softmax temperature of the KL soft-label loss"})
    mix: str = field(default="both", metadata={"help": "none, mixup, cutmix, or both (one of the two per batch)"})
    crop_min_scale: float = field(default=0.08, metadata={"help": "RandomResizedCrop lower area bound"})
    out: str = "runs/cda/eval"
    train: TrainerConfig = field(default_factory=_eval_defaults, metadata={"flatten": True})
