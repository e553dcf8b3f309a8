"""The autoencoder's adversarial term, as in Stable Diffusion's "KL-f8" autoencoder (Rombach et al. 2022,
appendix G), which takes it from taming-transformers (Esser et al. 2021, sec. 3.2):

- a patch discriminator (pix2pix's ``NLayerDiscriminator``, Isola et al. 2017): stride-2 4x4 convolutions
  with BatchNorm and LeakyReLU(0.2), then two stride-1 4x4 convolutions down to one logit per patch;
  weights drawn from N(0, 0.02), BatchNorm scales from N(1, 0.02);
- hinge loss for the discriminator, L_D = 0.5 (E relu(1 - D(x)) + E relu(1 + D(x_hat)));
- for the autoencoder, L_G = -E D(x_hat), weighted by the adaptive weight (Esser et al. 2021, eq. 7)
  lambda = ||grad_{G_L} L_rec|| / (||grad_{G_L} L_G|| + 1e-4), clamped to [0, 1e4] and detached, where G_L
  is the decoder's last layer (the clamp is on LDM's scale, a per-sample sum); times ``disc_weight`` (0.5 in
  SD's KL-f8 config) once the step reaches ``disc_start`` (before that the term is 0 and the discriminator
  does not train).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """pix2pix's NLayerDiscriminator: ``layers`` stride-2 convolutions (channels x 1, 2, 4, ... capped at 8),
    one stride-1 convolution, and a 1-channel stride-1 output convolution (a logit per patch)."""

    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3):
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < layers else 1
            seq += [nn.Conv2d(channels * prev, channels * mult, 4, stride, 1, bias=False),
                    nn.BatchNorm2d(channels * mult), nn.LeakyReLU(0.2, True)]
        seq.append(nn.Conv2d(channels * mult, 1, 4, 1, 1))
        self.main = nn.Sequential(*seq)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """L_D = 0.5 (E relu(1 - D(x)) + E relu(1 + D(x_hat)))."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    disc_weight: float = 0.5, max_weight: float = 1e4) -> torch.Tensor:
    """lambda = disc_weight * clamp(||grad_W rec|| / (||grad_W g|| + 1e-4), 0, max_weight), detached (Esser et al.
    2021, eq. 7; taming's ``calculate_adaptive_weight``, max_weight 1e4), W the decoder's last layer. LDM's
    reconstruction loss is a per-sample sum; for a per-pixel mean pass max_weight = 1e4 / pixels, which is the
    same cap on the same total loss (the ratio itself is 1 / pixels of LDM's either way)."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_adv = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, max_weight).detach() * disc_weight

