"""The consistency function f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))
around a diffusers ``UNet2DModel`` (CM, Song et al. 2023, sec. 3; iCT sec. 2). ``sigma`` is per sample."""

from __future__ import annotations

import torch
from diffusers import UNet2DModel

from consistency.recipe import SIGMA_DATA, SIGMA_MIN, c_noise, scalings

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


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def consistency_fn(unet, x: torch.Tensor, sigma: torch.Tensor, class_labels=None,
                   sigma_data: float = SIGMA_DATA, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """f_theta(x, sigma); the scalings are computed in float64-safe float32 and f(x, sigma_min) = x exactly."""
    sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32).expand(x.shape[0])
    c_skip, c_out, c_in = scalings(sigma, sigma_data, sigma_min)
    out = unet(_col(c_in, x) * x, c_noise(sigma), class_labels=class_labels).sample
    return _col(c_skip, x) * x + _col(c_out, x) * out
