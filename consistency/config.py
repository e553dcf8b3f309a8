"""Settings of ``studio ict train`` and ``studio ict sample`` (the CLI is generated from these)."""

from __future__ import annotations

from dataclasses import dataclass

from studio.cli.schema import option
from studio.training.config import TrainerConfig


def _ict_train_defaults() -> TrainerConfig:
    # iCT: RAdam, lr 1e-4, no warm-up, EMA 0.99993 over 400k iterations at batch 512 (CIFAR-10).
    # The EMA decay is shorter here because CPU runs are thousands, not hundreds of thousands, of steps.
    return TrainerConfig(steps=4000, batch_size=64, lr=1e-4, optimizer="radam", ema_decay=0.999,
                         checkpoint_every=500, log_every=50, mixed_precision="auto")


@dataclass
class ICTConfig:
    """Settings of studio ict train."""

    dataset: str = option("fashion-mnist", "fashion-mnist[:split] or an image folder")
    data_dir: str = ""
    limit: int = option(0, "use only the first N images (0: all)", ge=0)
    out: str = "runs/ict"
    conditional: bool = option(False, "class-conditional (a class embedding)")
    dropout: float = option(0.3, "UNet dropout (iCT: 0.3 on CIFAR-10)", ge=0, lt=1)
    s0: int = option(10, "initial discretisation steps of the curriculum (iCT: 10)", ge=1)
    s1: int = option(1280, "final discretisation steps (iCT: 1280)", ge=1)
    train: TrainerConfig = option(factory=_ict_train_defaults, flatten=True)


@dataclass
class ICTSampleConfig:
    """Settings of studio ict sample."""

    model: str = option(help="exported ConsistencyModelPipeline dir", positional=True)
    steps: int = option(1, "1, 2 (sigma_mid 0.821) or more", ge=1)
    sigmas: list[float] = option(help="explicit descending sigmas (overrides --steps)", factory=list, gt=0)
    num: int = option(64, ge=1)
    seed: int = 0
    class_label: int = option(-1, "class of a conditional model (-1: image k gets k mod C)", ge=-1)
    out: str = "ict_grid.png"
