"""Settings of ``studio dmd train`` (the CLI is generated from this dataclass).

Defaults are DMD2's released SD 1.5 configuration (tianweiy/DMD2, ``experiments/sdv1.5``: the from-scratch
run ``..._guidance1.75_lr1e-5_..._dfake10_from_scratch.sh`` and the GAN run ``..._gan1e-3_...``; optimizers
in ``main/train_sd.py``): real guidance 1.75, fake guidance 1, 10 fake-score updates per generator update,
t in [0.02, 0.98] x 1000 for the distribution-matching loss, AdamW (betas 0.9, 0.999, weight decay 0.01) at
lr 1e-5 for both networks, gradient clipping 10, no EMA; GAN weights 1e-3 (generator) and 1e-2 (classifier).
Warm-up: DMD2 asks for 500 steps of a scheduler that accelerate steps once per process, so on its 64 GPUs
the learning rate is full after about 8 optimizer steps (the comment in ``train_sd.py`` says so); 8 here.
DMD2's GAN run is a second stage: it continues the finished distribution-matching run at lr 5e-7; ``--gan``
here adds the term from the first step at the same lr (pass ``--init`` of a finished run and ``--lr 5e-7``
for the two-stage form). DMD2 trains at batch 2,048 (32 on each of 64 GPUs) for tens of thousands of steps;
the batch and step defaults here are a CPU budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.cli.schema import option
from studio.models.levers import MemoryLevers
from studio.training.config import TrainerConfig


def _dmd_train_defaults() -> TrainerConfig:
    return TrainerConfig(steps=2000, batch_size=32, lr=1e-5, warmup_steps=8, lr_schedule="constant",
                         optimizer="adamw", weight_decay=0.01, max_grad_norm=10.0, ema_decay=0.0,
                         checkpoint_every=250, log_every=50)


@dataclass
class DMDConfig:
    """Settings of studio dmd train."""

    teacher: str = option(help="teacher pipeline (epsilon prediction): the real score, and the fake score's start")
    init: str = option("", "the generator's start: a teacher (epsilon), 2-RF or InstaFlow student (flow) pipeline; "
                           "default: the teacher")
    dataset: str = option("fashion-mnist", "captions for the generator and, with --gan, real images: "
                                           "fashion-mnist[:split] or an image folder")
    data_dir: str = ""
    limit: int = option(0, "use only the first N images (0: all)", ge=0)
    out: str = "runs/dmd2"
    real_guidance: float = option(1.75, "classifier-free guidance of the real score (DMD2 SD 1.5: 1.75)", ge=1)
    update_ratio: int = option(10, "fake-score updates per generator update (DMD2 SD 1.5: 10)", ge=1)
    t_min: float = option(0.02, "lowest timestep of the distribution-matching loss, as a fraction of 1000",
                          ge=0, lt=1)
    t_max: float = option(0.98, "highest timestep of the distribution-matching loss, as a fraction of 1000",
                          gt=0, le=1)
    gan: bool = option(False, "add the GAN term: a classifier on the fake score's bottleneck, real images "
                              "from --dataset")
    gan_gen_weight: float = option(1e-3, "weight of the generator's GAN term (DMD2 SD 1.5: 1e-3)", ge=0)
    gan_cls_weight: float = option(1e-2, "weight of the classifier's GAN loss (DMD2 SD 1.5: 1e-2)", ge=0)
    memory: MemoryLevers = option(factory=MemoryLevers, flatten=True)
    train: TrainerConfig = option(factory=_dmd_train_defaults, flatten=True)
