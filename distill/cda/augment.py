"""Differentiable batch augmentations of SRe2L/CDA (all draws from torch's global RNG, which the
shared loop seeds from the step, so a resumed run draws the same crops).

- ``random_resized_crop``: torchvision's RandomResizedCrop sampling (``get_params``) and resize.
  ``per_sample=False`` draws one box for the whole batch, as the authors' recovery does when it
  applies ``transforms.RandomResizedCrop`` to a 4-D tensor; evaluation crops each image.
- ``random_flip``, ``roll_jitter`` (``torch.roll`` by offsets in [0, jitter], SRe2L).
- ``pad_crop``: a random crop of the original size after black padding (SRe2L's small-dataset squeeze).
- ``mix``: mixup (lambda ~ Beta(0.8, 0.8), SRe2L's CIFAR relabel) or CutMix (Beta(1, 1),
  Yun et al. 2019, as in SRe2L's ImageNet FKD); the soft label comes from the teacher on the
  mixed image, so no label mixing is needed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms import functional as TF

RATIO = (3.0 / 4.0, 4.0 / 3.0)
MIX_MODES = ("none", "mixup", "cutmix", "both")


def random_resized_crop(x: torch.Tensor, size: int, scale: tuple[float, float],
                        per_sample: bool = False) -> torch.Tensor:
    """Crops of area fraction in ``scale`` and aspect in [3/4, 4/3], resized to ``size``."""
    if not per_sample:
        i, j, h, w = RandomResizedCrop.get_params(x[0], list(scale), list(RATIO))
        return TF.resized_crop(x, i, j, h, w, [size, size], antialias=True)
    out = []
    for img in x:
        i, j, h, w = RandomResizedCrop.get_params(img, list(scale), list(RATIO))
        out.append(TF.resized_crop(img, i, j, h, w, [size, size], antialias=True))
    return torch.stack(out)


def pad_crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Per-image random crop of the original size from the image padded by ``pad`` black pixels."""
    if pad <= 0:
        return x
    H, W = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad), value=-1.0)
    offs = torch.randint(0, 2 * pad + 1, (x.shape[0], 2))
    return torch.stack([padded[k, :, i:i + H, j:j + W] for k, (i, j) in enumerate(offs.tolist())])


def random_flip(x: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
    if not per_sample:
        return x.flip(-1) if torch.rand(()) < 0.5 else x
    mask = (torch.rand(x.shape[0]) < 0.5).to(x.device).view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(-1), x)


def roll_jitter(x: torch.Tensor, jitter: int) -> torch.Tensor:
    if jitter <= 0:
        return x
    dy, dx = (int(v) for v in torch.randint(0, jitter + 1, (2,)))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def mix(x: torch.Tensor, mode: str, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0) -> torch.Tensor:
    """Mix each image with a randomly permuted partner; ``both`` picks mixup or CutMix per batch."""
    if mode == "none" or x.shape[0] < 2:
        return x
    if mode == "both":
        mode = "mixup" if torch.rand(()) < 0.5 else "cutmix"
    perm = torch.randperm(x.shape[0]).to(x.device)
    if mode == "mixup":
        lam = float(torch.distributions.Beta(mixup_alpha, mixup_alpha).sample())
        return lam * x + (1.0 - lam) * x[perm]
    lam = float(torch.distributions.Beta(cutmix_alpha, cutmix_alpha).sample())
    H, W = x.shape[-2:]
    ch, cw = int(H * math.sqrt(1.0 - lam)), int(W * math.sqrt(1.0 - lam))
    cy, cx = (int(v) for v in (torch.randint(0, H, ()), torch.randint(0, W, ())))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, H)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, W)
    out = x.clone()
    out[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
    return out
