"""Settings of ``studio ict train`` and ``studio ict sample`` (the CLI is generated from these)."""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.training.config import TrainerConfig


def _ict_train_defaults() -> TrainerConfig:
    # iCT: RAdam, lr 1e-4, no warm-up, EMA 0.99993 over 400k iterations at batch 512 (CIFAR-10).
    # The EMA decay is shorter here because CPU runs are thousands, not hundreds of thousands, of steps.
    return TrainerConfig(steps=4000, batch_size=64, lr=1e-4, optimizer="radam", ema_decay=0.999,
                         checkpoint_every=500, log_every=50, mixed_precision="auto")


@dataclass
class ICTConfig:
    dataset: str = field(default="fashion-mnist", metadata={"help": "fashion-mnist[:split] or an image folder"})
    data_dir: str = ""
    limit: int = field(default=0, metadata={"help": "use only the first N images (0: all)"})
    out: str = "runs/ict"
    conditional: bool = field(default=False, metadata={"help": "class-conditional (a class embedding)"})
    dropout: float = field(default=0.3, metadata={"help": "UNet dropout (iCT: 0.3 on CIFAR-10)"})
    s0: int = 10
    s1: int = 1280
    train: TrainerConfig = field(default_factory=_ict_train_defaults, metadata={"flatten": True})


@dataclass
class ICTSampleConfig:
    model: str = field(default="", metadata={"positional": True, "help": "exported ConsistencyModelPipeline dir"})
    steps: int = field(default=1, metadata={"help": "1, 2 (sigma_mid 0.821) or more"})
    sigmas: list[float] = field(default_factory=list, metadata={"help": "explicit descending sigmas (overrides --steps)"})
    num: int = 64
    seed: int = 0
    class_label: int = field(default=-1, metadata={"help": "class of a conditional model (-1: image k gets k mod C)"})
    out: str = "ict_grid.png"
