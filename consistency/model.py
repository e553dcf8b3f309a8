"""The consistency model's network: a diffusers ``UNet2DModel`` in the consistency parameterisation
(``studio.diffusion.adapter.ConsistencyDenoiser``; CM, Song et al. 2023, sec. 3; iCT sec. 2)."""

from __future__ import annotations

import torch
from diffusers import UNet2DModel

from studio.diffusion.adapter import ConsistencyDenoiser

from consistency.recipe import SIGMA_DATA, SIGMA_MIN

# Built-in size for 32x32 images (1.1M parameters); the diffusion baseline of the benchmark uses the same.
SMALL_UNET = dict(sample_size=32, in_channels=3, out_channels=3, layers_per_block=1,
                  block_out_channels=(32, 64, 64), down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                  up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=16,
                  attention_head_dim=32)


def build_unet(num_classes: int = 0, dropout: float = 0.0, seed: int = 0, **overrides) -> UNet2DModel:
    torch.manual_seed(seed)
    cfg = {**SMALL_UNET, **overrides, "dropout": dropout}
    if num_classes:
        cfg["num_class_embeds"] = num_classes
    return UNet2DModel(**cfg)


def consistency_model(unet) -> ConsistencyDenoiser:
    """f_theta(x, sigma) of ``unet`` with iCT's sigma_data 0.5 and sigma_min 0.002; f(x, sigma_min) = x exactly."""
    return ConsistencyDenoiser(unet, SIGMA_DATA, SIGMA_MIN)
