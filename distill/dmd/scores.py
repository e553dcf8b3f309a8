"""The pieces of DMD2 (Yin et al. 2024, "Improved Distribution Matching Distillation for Fast Image
Synthesis") that are math, apart from the training schedule (``distill.dmd.objective``).

Time convention: SD's DDPM timesteps t in [0, 1000) with x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps
(``studio.diffusion.objective``); the real and the fake score are epsilon-prediction UNets of the teacher's
schedule, read as denoisers mu(x_t, t) = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t).

- :func:`dmd_gradient`: the distribution-matching gradient (DMD, Yin et al. 2023, eq. 7 with its
  normalisation of sec. 3.2, kept by DMD2 sec. 4.1): with p_real = x - mu_real(x_t, t) and
  p_fake = x - mu_fake(x_t, t), grad = (p_real - p_fake) / mean_{c,h,w} |p_real| per sample, NaN set to 0.
  The generator's loss is 0.5 * mean (x - sg(x - grad))^2, whose gradient with respect to x is grad / numel:
  descending it moves x by mu_real - mu_fake, from the fake towards the real distribution.
- :class:`FakeScore`: the trainable copy of the teacher's UNet (DMD2's "fake score") with, for the GAN term
  (DMD2 sec. 4.3), a classifier head on its bottleneck: the UNet's down path and mid block on a noisy input,
  then stride-2 4x4 convolutions with GroupNorm(32) and SiLU down to 4x4, a 4x4 stride-4 convolution to 1x1,
  GroupNorm, SiLU and a 1x1 convolution to one logit (the head of DMD2's ``sd_guidance.py``, which for SD
  1.5's 8x8 bottleneck is exactly one stride-2 convolution).
- GAN losses (DMD2's released code): the classifier sees x_t with t ~ U{0, ..., 999} ("diffusion GAN"); the
  generator's term is softplus(-D(fake)), the classifier's softplus(D(fake)) + softplus(-D(real)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from studio.diffusion.adapter import append_dims


def denoised(x_t: torch.Tensor, eps: torch.Tensor, alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """mu = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), in float64 as DMD2's ``get_x0_from_noise``."""
    abar = append_dims(alphas_cumprod.to(x_t.device, torch.float64)[t], x_t.ndim)
    return ((x_t.double() - (1 - abar).sqrt() * eps.double()) / abar.sqrt()).to(x_t.dtype)


def dmd_gradient(x: torch.Tensor, mu_real: torch.Tensor, mu_fake: torch.Tensor) -> torch.Tensor:
    """(p_real - p_fake) / mean|p_real| per sample with p = x - mu; NaN -> 0 (DMD eq. 7 and sec. 3.2)."""
    p_real, p_fake = x - mu_real, x - mu_fake
    scale = p_real.abs().mean(dim=tuple(range(1, x.ndim)), keepdim=True)
    return torch.nan_to_num((p_real - p_fake) / scale)


def dmd_loss(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """0.5 * mean (x - sg(x - grad))^2: its gradient with respect to x is grad / x.numel()."""
    return 0.5 * F.mse_loss(x.float(), (x - grad).detach().float())


def generator_gan_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-logits_fake).mean()


def classifier_gan_loss(logits_fake: torch.Tensor, logits_real: torch.Tensor) -> torch.Tensor:
    return F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()


def bottleneck(unet, sample: torch.Tensor, timestep: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """The mid block's output of a ``UNet2DConditionModel`` without class or added conditions: the first half
    of its ``forward`` (time embedding, conv_in, down blocks, mid block), as DMD2's ``classify_forward``."""
    emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep))
    if unet.time_embed_act is not None:
        emb = unet.time_embed_act(emb)
    h = unet.conv_in(sample)
    for block in unet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            h, _ = block(hidden_states=h, temb=emb, encoder_hidden_states=cond)
        else:
            h, _ = block(hidden_states=h, temb=emb)
    if getattr(unet.mid_block, "has_cross_attention", False):
        return unet.mid_block(h, emb, encoder_hidden_states=cond)
    return unet.mid_block(h, emb)


def classifier_head(channels: int, size: int, groups: int = 32) -> nn.Sequential:
    """DMD2's head on a ``channels`` x ``size`` x ``size`` bottleneck (``size`` a power of two >= 4)."""
    groups = min(groups, channels)
    layers: list[nn.Module] = []
    while size > 4:
        layers += [nn.Conv2d(channels, channels, 4, 2, 1), nn.GroupNorm(groups, channels), nn.SiLU()]
        size //= 2
    layers += [nn.Conv2d(channels, channels, size, size, 0), nn.GroupNorm(groups, channels), nn.SiLU(),
               nn.Conv2d(channels, 1, 1, 1, 0)]
    return nn.Sequential(*layers)


class FakeScore(nn.Module):
    """The fake score (a UNet) and, with ``gan``, its classifier head; one ``forward`` for both so that a
    DDP-wrapped copy sees every use of its weights in one pass."""

    def __init__(self, unet, gan: bool = False, seed: int = 0):
        super().__init__()
        self.unet = unet
        self.head = None
        if gan:
            c = unet.config
            size = c.sample_size // 2 ** (len(c.block_out_channels) - 1)
            with torch.random.fork_rng(devices=[]):  # the head's initial weights are a function of the seed
                torch.manual_seed(seed)
                self.head = classifier_head(c.block_out_channels[-1], size)

    def forward(self, x_t=None, t=None, cond=None, cls_x=None, cls_t=None, cls_cond=None):
        """(eps_hat of x_t, or None; logits of the classifier on cls_x at cls_t, or None)."""
        eps = None if x_t is None else self.unet(x_t, t, encoder_hidden_states=cond).sample
        logits = None if cls_x is None else self.head(bottleneck(self.unet, cls_x, cls_t, cls_cond)).flatten(1)
        return eps, logits
