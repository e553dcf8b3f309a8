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
    dropout: float = option(0.0, "UNet dropout (iCT: 0.3 on CIFAR-10; measured worse on the CPU budgets here, "
                                 "docs/ict.md)", ge=0, lt=1)
    s0: int = option(10, "initial discretisation steps of the curriculum (iCT: 10)", ge=1)
    s1: int = option(1280, "final discretisation steps (iCT: 1280)", ge=1)
    sigma_data: float = option(0.5, "sigma_data of the parameterisation (iCT: 0.5); 0: the data's RMS, measured", ge=0)
    noise_scale: float = option(250.0, "c_noise = scale ln(sigma): 250 as diffusers' CM scheduler (exportable), "
                                       "0.25 as the CM CIFAR-10 code", gt=0)
    flip: bool = option(False, "random horizontal flips (the CM CIFAR-10 configuration)")
    train: TrainerConfig = option(factory=_ict_train_defaults, flatten=True)


def _edm_train_defaults() -> TrainerConfig:
    # EDM trains CIFAR-10 with Adam, lr 1e-3, batch 512, 200 Mimg; here the iCT benchmark's CPU budget and
    # optimizer (RAdam, lr 2e-4, batch 64, EMA 0.999), so the DDPM, EDM and consistency rows compare alike.
    return TrainerConfig(steps=3000, batch_size=64, lr=2e-4, optimizer="radam", ema_decay=0.999,
                         checkpoint_every=250, log_every=50, mixed_precision="auto")


@dataclass
class EDMConfig:
    """Settings of studio edm train."""

    dataset: str = option("fashion-mnist", "fashion-mnist[:split] or an image folder")
    data_dir: str = ""
    limit: int = option(0, "use only the first N images (0: all)", ge=0)
    out: str = "runs/edm"
    conditional: bool = option(False, "class-conditional (a class embedding)")
    dropout: float = option(0.13, "UNet dropout (EDM: 0.13 on CIFAR-10)", ge=0, lt=1)
    sigma_data: float = option(0.0, "sigma_data of the preconditioning; 0: the data's RMS, measured", ge=0)
    noise_scale: float = option(0.25, "c_noise = scale ln(sigma): 0.25 as EDM, 250 as diffusers' CM scheduler", gt=0)
    flip: bool = option(False, "random horizontal flips")
    train: TrainerConfig = option(factory=_edm_train_defaults, flatten=True)


def _ect_train_defaults() -> TrainerConfig:
    # ECT (run_ecm.sh): RAdam, lr 1e-4, batch 128, EMA 0.9999 over 200k iterations; a CPU tuning is hundreds
    # of steps, so batch 64 as the pretraining and EMA 0.999.
    return TrainerConfig(steps=800, batch_size=64, lr=1e-4, optimizer="radam", ema_decay=0.999,
                         checkpoint_every=100, log_every=50, mixed_precision="auto")


@dataclass
class ECTConfig:
    """Settings of studio ict tune."""

    init: str = option(help="the EDM model folder (studio edm train) to start from")
    dataset: str = option("fashion-mnist", "fashion-mnist[:split] or an image folder (the pretraining's data)")
    data_dir: str = ""
    limit: int = option(0, "use only the first N images (0: all)", ge=0)
    out: str = "runs/ect"
    dropout: float = option(0.2, "UNet dropout while tuning (ECT: 0.2 on CIFAR-10)", ge=0, lt=1)
    q: float = option(2.0, "dt = t - r shrinks by q at each stage (ECT: 2)", gt=1)
    k: float = option(8.0, "n(t) = 1 + k sigmoid(-b t) (ECT: 8)", ge=0)
    b: float = option(1.0, "n(t) = 1 + k sigmoid(-b t) (ECT: 1)", ge=0)
    double_every: int = option(0, "steps per stage (0: --steps / 8, ECT CIFAR-10's 8 stages of 25k)", ge=0)
    huber_c: float = option(0.0, "pseudo-Huber c; 0: the per-sample L2 norm (ECT CIFAR-10)", ge=0)
    flip: bool = option(False, "random horizontal flips")
    train: TrainerConfig = option(factory=_ect_train_defaults, flatten=True)


@dataclass
class EDMSampleConfig:
    """Settings of studio edm sample."""

    model: str = option(help="model folder of studio edm train", positional=True)
    steps: int = option(18, "Heun steps (2N - 1 network evaluations; EDM: 18)", ge=1)
    euler: bool = option(False, "Euler steps only (N evaluations), as diffusers' EDMEulerScheduler")
    num: int = option(64, ge=1)
    seed: int = 0
    class_label: int = option(-1, "class of a conditional model (-1: image k gets k mod C)", ge=-1)
    out: str = "edm_grid.png"


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
