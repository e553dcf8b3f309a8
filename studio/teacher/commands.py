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

from studio import StudioError
from studio.data import load_dataset
from studio.models.backbone import load_pipeline
from studio.models.presets import build_pipeline, preset, tokenizer_corpus
from studio.teacher.config import TeacherConfig
from studio.teacher.objective import UNetStage
from studio.teacher.vae_stage import VAEStage
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
    if cfg.vae and cfg.init:
        raise StudioError("--vae and --init both give the autoencoder: pass one")
    if new:
        pipe = build_pipeline(cfg.preset, tokenizer_corpus(data.class_names, sorted(set(data.captions))),
                              seed=cfg.train.seed)
        if cfg.vae:
            pipe.vae = load_vae(cfg.vae, pipe)
        else:
            stages.append(vae_stage(cfg, pipe, data))

    def unet_stage():
        if new and not cfg.vae:  # a new pipeline: its finished autoencoder, as the VAE stage saved it
            pipe.vae = AutoencoderKL.from_pretrained(str(out / VAE_DIR), use_safetensors=True)
        return UNetStage(pipe, data, cfg.caption_dropout, cfg.train_text_encoder, info, cfg.memory, cfg.train.seed)

    stages.append(Stage(UNET_STAGE, unet_stage, cfg.train))
    return run(cfg, stages)


def load_vae(path: str, pipe) -> AutoencoderKL:
    """A trained ``AutoencoderKL`` directory (safetensors only) whose latents fit ``pipe``'s UNet."""
    if not (Path(path) / "config.json").is_file():
        raise StudioError(f"--vae {path}: no autoencoder there (expected config.json and safetensors weights)")
    vae = AutoencoderKL.from_pretrained(path, use_safetensors=True)
    got = (vae.config.latent_channels, 2 ** (len(vae.config.block_out_channels) - 1))
    want = (pipe.unet.config.in_channels, pipe.vae_scale_factor)
    if got != want:
        raise StudioError(f"--vae {path} makes latents of {got[0]} channels at 1/{got[1]} of the image size; this "
                          f"preset's UNet needs {want[0]} channels at 1/{want[1]}")
    return vae


def vae_stage(cfg: TeacherConfig, pipe, data) -> Stage:
    """Stage 1 of a new pipeline: ``pipe``'s autoencoder on ``data``, exported to OUT/stages/vae/vae. Its optimizers
    are LDM's autoencoder optimizers: Adam betas (0.5, 0.9) for both networks; no EMA."""
    train = replace(cfg.train, steps=cfg.vae_steps, lr=cfg.vae_lr, batch_size=cfg.vae_batch_size,
                    warmup_steps=min(cfg.train.warmup_steps, cfg.vae_steps), ema_decay=0.0, adam_beta1=0.5,
                    adam_beta2=0.9, resume="latest" if cfg.train.resume else "")

    def build():
        return VAEStage(pipe.vae, data, cfg.kl_weight, cfg.vae_disc_weight, cfg.vae_disc_start, cfg.vae_disc_channels,
                        seed=cfg.train.seed)

    return Stage(VAE_STAGE, build, train, export_to=VAE_DIR, done=f"{VAE_DIR}/config.json")


def commands() -> dict:
    return {("teacher", "train"): (TeacherConfig, train_teacher,
                                   "train the latent diffusion teacher (VAE, then UNet)")}
