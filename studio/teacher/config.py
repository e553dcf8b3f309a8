"""Settings of ``studio teacher train``."""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.training.config import TrainerConfig


def _unet_defaults() -> TrainerConfig:
    return TrainerConfig(steps=2000, batch_size=32, lr=1e-3, warmup_steps=100, lr_schedule="cosine",
                         ema_decay=0.999, checkpoint_every=250, log_every=50)


@dataclass
class TeacherConfig:
    dataset: str = field(default="fashion-mnist", metadata={"help": "fashion-mnist[:split] or an image folder"})
    data_dir: str = field(default="", metadata={"help": "folder with the Fashion-MNIST IDX files"})
    preset: str = field(default="tiny", metadata={"help": "size preset of a new pipeline"})
    init: str = field(default="", metadata={"help": "fine-tune this pipeline (directory or hub id) instead; "
                                                    "skips the VAE stage"})
    out: str = "runs/teacher"
    limit: int = field(default=0, metadata={"help": "use only the first N images (0: all)"})
    caption_dropout: float = 0.1
    train_text_encoder: bool = True
    vae_steps: int = field(default=500, metadata={"help": "stage 1 (VAE) optimizer steps"})
    vae_lr: float = 1e-3
    vae_batch_size: int = 32
    kl_weight: float = 1e-6
    train: TrainerConfig = field(default_factory=_unet_defaults, metadata={"flatten": True})
