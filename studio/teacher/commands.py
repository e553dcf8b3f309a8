"""``studio teacher train``: stage 1 trains the VAE, stage 2 the UNet; saves a StableDiffusionPipeline.

Layout of OUT: the pipeline itself (model_index.json, unet/, vae/, ...), ``config.json``,
``studio_model.json``, ``stages/vae`` and ``stages/unet`` (each with checkpoints and TensorBoard
logs; ``stages/vae/vae`` is the finished autoencoder). ``--resume latest`` skips a finished VAE
stage and resumes the UNet stage. Registered with the studio CLI like every method.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from diffusers import AutoencoderKL

from studio.data import load_dataset
from studio.models.backbone import load_pipeline
from studio.models.presets import build_pipeline, preset, tokenizer_corpus
from studio.teacher.config import TeacherConfig
from studio.teacher.objective import UNetStage, VAEStage
from studio.training.driver import Stage, run

VAE_STAGE, UNET_STAGE, VAE_DIR = "stages/vae", "stages/unet", "stages/vae/vae"


def train_teacher(cfg: TeacherConfig) -> Path | None:
    """Run both stages (or only the UNet stage with ``--init``); returns the pipeline directory,
    or None if SIGTERM interrupted it."""
    out = Path(cfg.out)
    pipe = load_pipeline(cfg.init) if cfg.init else None
    res = pipe.unet.config.sample_size * pipe.vae_scale_factor if pipe else preset(cfg.preset).resolution
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir or None, resolution=res, limit=cfg.limit or None)
    info = dict(kind="teacher", steps=cfg.sample_steps, guidance=cfg.sample_guidance, dataset=cfg.dataset)
    stages, new = [], pipe is None
    if new:
        pipe = build_pipeline(cfg.preset, tokenizer_corpus(data.class_names, sorted(set(data.captions))),
                              seed=cfg.train.seed)
        vae_train = replace(cfg.train, steps=cfg.vae_steps, lr=cfg.vae_lr, batch_size=cfg.vae_batch_size,
                            warmup_steps=min(cfg.train.warmup_steps, cfg.vae_steps), ema_decay=0.0,
                            resume="latest" if cfg.train.resume else "")
        stages.append(Stage(VAE_STAGE, lambda: VAEStage(pipe.vae, data, cfg.kl_weight), vae_train,
                            export_to=VAE_DIR, done=f"{VAE_DIR}/config.json"))

    def unet_stage():
        if new:  # a new pipeline: its finished autoencoder, as the VAE stage saved it
            pipe.vae = AutoencoderKL.from_pretrained(str(out / VAE_DIR), use_safetensors=True)
        return UNetStage(pipe, data, cfg.caption_dropout, cfg.train_text_encoder, info, cfg.memory, cfg.train.seed)

    stages.append(Stage(UNET_STAGE, unet_stage, cfg.train))
    return run(cfg, stages)


def commands() -> dict:
    return {("teacher", "train"): (TeacherConfig, train_teacher,
                                   "train the latent diffusion teacher (VAE, then UNet)")}
