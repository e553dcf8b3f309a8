"""Settings of ``studio teacher train``."""

from __future__ import annotations

from dataclasses import dataclass

from studio.cli.schema import option
from studio.models.levers import MemoryLevers
from studio.models.presets import PresetName
from studio.training.config import TrainerConfig


def _unet_defaults() -> TrainerConfig:
    # 16,000 UNet steps (about 70 min on 2 CPU cores): benchmarks/teacher_quality.py; 2,000 before
    return TrainerConfig(steps=16000, batch_size=32, lr=1e-3, warmup_steps=100, lr_schedule="cosine",
                         ema_decay=0.999, checkpoint_every=250, log_every=50)


@dataclass
class TeacherConfig:
    """Settings of studio teacher train."""

    dataset: str = option("fashion-mnist", "fashion-mnist[:split] or an image folder")
    data_dir: str = option("", "folder with the Fashion-MNIST IDX files (default: the studio's search path)")
    preset: PresetName = option("tiny", "size preset of a new pipeline")
    init: str = option("", "fine-tune this pipeline (directory or hub id) instead; skips the VAE stage")
    out: str = option("runs/teacher", "the run folder: pipeline, config.json, stages/")
    vae: str = option("", "use this trained autoencoder (a VAE directory, e.g. another teacher's vae/) instead of "
                          "training stage 1")
    limit: int = option(0, "use only the first N images (0: all)", ge=0)
    caption_dropout: float = option(0.1, "share of captions replaced by '' (for guidance)", ge=0, lt=1)
    train_text_encoder: bool = True
    vae_steps: int = option(3000, "stage 1 (VAE) optimizer steps (3,000: reconstruction FID 4.4, 500: 17.1; "
                                  "benchmarks/teacher_quality.py)", ge=1)
    vae_lr: float = option(1e-3, gt=0)
    vae_batch_size: int = option(32, ge=1)
    kl_weight: float = option(1e-6, ge=0)
    vae_disc_weight: float = option(0.0, "weight of the VAE's adversarial term (times the adaptive weight; SD's "
                                         "KL-f8: 0.5); 0: L1 + KL only, the default here, which scored best in "
                                         "benchmarks/teacher_quality.py", ge=0)
    vae_disc_start: int = option(1000, "VAE step from which the adversarial term and its discriminator train", ge=0)
    vae_disc_channels: int = option(64, "width of the VAE's patch discriminator (pix2pix: 64)", ge=1)
    sample_steps: int = option(25, "recommended sampling steps, written to studio_model.json", ge=1)
    sample_guidance: float = option(2.0, "recommended guidance, written to studio_model.json (2: the lowest 25-step "
                                         "FID of the default teacher's sweep in benchmarks/teacher_quality.py)",
                                    ge=0)
    memory: MemoryLevers = option(factory=MemoryLevers, flatten=True)
    train: TrainerConfig = option(factory=_unet_defaults, flatten=True)
