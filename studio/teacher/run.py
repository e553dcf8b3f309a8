"""``studio teacher train``: stage 1 trains the VAE, stage 2 the UNet; saves a StableDiffusionPipeline.

Layout of OUT: the pipeline itself (model_index.json, unet/, vae/, ...), ``config.json``,
``stages/vae`` and ``stages/unet`` (each with checkpoints and TensorBoard logs). A rerun
with ``--resume latest`` skips a finished VAE stage and resumes the UNet stage.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from accelerate import PartialState
from diffusers import AutoencoderKL

from studio import StudioError
from studio.models.backbone import load_pipeline, save_pipeline
from studio.data import load_dataset
from studio.devices import process_state
from studio.models.model_info import write_model_info
from studio.models.presets import build_pipeline, preset, tokenizer_corpus
from studio.teacher.config import TeacherConfig
from studio.teacher.unet_stage import UNetStage
from studio.teacher.vae_stage import VAEStage, latent_scaling_factor
from studio.training.config import validate
from studio.training.driver import write_resolved_config
from studio.training.loop import train


def _vae_stage(cfg: TeacherConfig, vae, data, out: Path, state: PartialState):
    """Train (or reload a finished) VAE; returns it, or None if SIGTERM interrupted the stage."""
    stage_dir = out / "stages" / "vae"
    final = stage_dir / "vae"
    if (final / "config.json").is_file():
        return AutoencoderKL.from_pretrained(str(final), use_safetensors=True)
    tcfg = replace(cfg.train, steps=cfg.vae_steps, lr=cfg.vae_lr, batch_size=cfg.vae_batch_size,
                   warmup_steps=min(cfg.train.warmup_steps, cfg.vae_steps), ema_decay=0.0)
    result = train(VAEStage(vae, data, cfg.kl_weight), tcfg, stage_dir)
    if result.interrupted:
        return None
    vae = result.modules["vae"].vae.eval()
    vae.register_to_config(scaling_factor=latent_scaling_factor(vae, data.pixels(slice(0, 512)).to(vae.device)))
    if state.is_main_process:
        tmp = stage_dir / "vae.tmp"
        vae.save_pretrained(str(tmp), safe_serialization=True)
        tmp.replace(final)
    state.wait_for_everyone()
    return vae


def train_teacher(cfg: TeacherConfig) -> Path | None:
    """Run both stages; returns the pipeline directory, or None if interrupted by SIGTERM."""
    if not cfg.init and cfg.vae_steps < 1:
        raise StudioError(f"--vae-steps must be at least 1, got {cfg.vae_steps}")
    if not 0.0 <= cfg.caption_dropout < 1.0:
        raise StudioError(f"--caption-dropout must be in [0, 1), got {cfg.caption_dropout}")
    validate(cfg.train)
    state = process_state()
    out = Path(cfg.out)
    pipe = load_pipeline(cfg.init) if cfg.init else None
    res = pipe.unet.config.sample_size * pipe.vae_scale_factor if pipe else preset(cfg.preset).resolution
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir or None, resolution=res, limit=cfg.limit or None)
    if state.is_main_process:
        write_resolved_config(out, cfg)
    if pipe is None:
        corpus = tokenizer_corpus(data.class_names, sorted(set(data.captions)))
        pipe = build_pipeline(cfg.preset, corpus, seed=cfg.train.seed)
        vae = _vae_stage(cfg, pipe.vae, data, out, state)
        if vae is None:
            return None
        pipe.vae = vae
    result = train(UNetStage(pipe, data, cfg.caption_dropout, cfg.train_text_encoder), cfg.train,
                   out / "stages" / "unet")
    if result.interrupted:
        return None
    pipe.unet = result.modules["unet"]
    if "text_encoder" in result.modules:
        pipe.text_encoder = result.modules["text_encoder"]
    if state.is_main_process:
        save_pipeline(pipe.to("cpu"), out)
        write_model_info(out, "teacher", steps=25, guidance=5.0, dataset=cfg.dataset)
    state.wait_for_everyone()
    return out
