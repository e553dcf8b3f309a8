"""Small Stable-Diffusion-architecture pipelines built from named config presets.

A preset gives ordinary diffusers components (``UNet2DConditionModel``, ``AutoencoderKL``,
``CLIPTextModel``, a CLIP BPE tokenizer) with small sizes, so every code path is the
Stable Diffusion path. The noise schedule is SD's: scaled-linear betas 0.00085 -> 0.012
over 1000 steps (SD v1 config), sampled by default with DPM-Solver++ (InstaFlow's teacher).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from studio import StudioError
from studio.data.captioned import CAPTION_TEMPLATES, caption
from studio.models.tokenizer import train_clip_tokenizer

SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                   steps_offset=1, prediction_type="epsilon")


PresetName = Literal["tiny", "sd15"]  # the keys of PRESETS (a test checks they agree)


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
    # Stable Diffusion 1.5's own architecture (the unet/, vae/ and text_encoder/ configs of its
    # release): UNet 859.5M, VAE 83.7M parameters, 512x512 images, 64x64x4 latents. The CLIP
    # vocabulary is not available offline, so the text encoder has the studio's tokenizer (1,024
    # tokens): 85.9M parameters instead of CLIP ViT-L/14's 123.1M, the difference being the
    # token embedding alone. Random weights: for sizing a run and checking a cluster.
    "sd15": Preset(
        resolution=512,
        unet=dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                  block_out_channels=(320, 640, 1280, 1280),
                  down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                  up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768,
                  attention_head_dim=8, norm_num_groups=32, downsample_padding=1, flip_sin_to_cos=True, freq_shift=0),
        vae=dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                 block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                 up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=512,
                 scaling_factor=0.18215),
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu"),
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


def component_configs(name: str, resolution: int = 0) -> tuple[dict, dict]:
    """The (UNet, VAE) configs of preset ``name`` at ``resolution`` pixels (0: the preset's own)."""
    p = preset(name)
    res = resolution or p.resolution
    down = 2 ** (len(p.vae["block_out_channels"]) - 1)
    unet_down = 2 ** (len(p.unet["block_out_channels"]) - 1)
    if res % (down * unet_down):
        raise StudioError(f"--resolution {res}: preset {name} needs a multiple of {down * unet_down}")
    return {**p.unet, "sample_size": res // down}, {**p.vae, "sample_size": res}


def build_pipeline(name: str, corpus: list[str], seed: int = 0, resolution: int = 0) -> StableDiffusionPipeline:
    """A randomly initialised SD pipeline of preset ``name`` (at ``resolution`` pixels; 0: the preset's),
    tokenizer trained on ``corpus``."""
    p = preset(name)
    unet_cfg, vae_cfg = component_configs(name, resolution)
    tokenizer = train_clip_tokenizer(corpus, vocab_size=p.vocab_size)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id,
                                                pad_token_id=tokenizer.pad_token_id, **p.text))
    unet = UNet2DConditionModel(**unet_cfg)
    vae = AutoencoderKL(**vae_cfg)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DPMSolverMultistepScheduler(**SD_SCHEDULE), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
