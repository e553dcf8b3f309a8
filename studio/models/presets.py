"""Small Stable-Diffusion-architecture pipelines built from named config presets.

A preset gives ordinary diffusers components (``UNet2DConditionModel``, ``AutoencoderKL``,
``CLIPTextModel``, a CLIP BPE tokenizer) with small sizes, so every code path is the
Stable Diffusion path. The noise schedule is SD's: scaled-linear betas 0.00085 -> 0.012
over 1000 steps (SD v1 config), sampled by default with DPM-Solver++ (InstaFlow's teacher).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from studio import StudioError
from studio.data.captioned import CAPTION_TEMPLATES, caption
from studio.models.tokenizer import train_clip_tokenizer

SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                   steps_offset=1, prediction_type="epsilon")


@dataclass(frozen=True)
class Preset:
    resolution: int
    unet: dict
    vae: dict
    text: dict
    vocab_size: int


PRESETS = {
    # 32x32 RGB images, 16x16x4 latents: UNet 1.0M, VAE 0.66M, text encoder 38k parameters.
    # Cross-attention sits at the 8x8 level (and the mid block): a class is a global property,
    # and there it costs 64 query tokens instead of 256. Measured on 2 CPU cores: 0.25 s per
    # batch-32 step, and a 3x larger right-vs-wrong-prompt loss gap after 600 steps than with
    # SD's placement at the highest resolution after 2,000.
    "tiny": Preset(
        resolution=32,
        unet=dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                  block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                  attention_head_dim=2, norm_num_groups=8),  # diffusers: "attention_head_dim" = heads here
        vae=dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                 block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D",) * 2,
                 up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=16, sample_size=32, scaling_factor=1.0,
                 mid_block_add_attention=False),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=77, projection_dim=32),
        vocab_size=1024,
    ),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise StudioError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def tokenizer_corpus(class_names: list[str], captions: list[str] = ()) -> list[str]:
    """Every template filled with every class name, plus the dataset's own captions."""
    return [caption(t, n) for n in class_names for t in CAPTION_TEMPLATES] + list(captions)


def build_pipeline(name: str, corpus: list[str], seed: int = 0) -> StableDiffusionPipeline:
    """A randomly initialised SD pipeline of preset ``name``, tokenizer trained on ``corpus``."""
    p = preset(name)
    tokenizer = train_clip_tokenizer(corpus, vocab_size=p.vocab_size)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id,
                                                pad_token_id=tokenizer.pad_token_id, **p.text))
    unet = UNet2DConditionModel(**p.unet)
    vae = AutoencoderKL(**p.vae)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DPMSolverMultistepScheduler(**SD_SCHEDULE), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
