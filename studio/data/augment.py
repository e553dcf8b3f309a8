"""Batch augmentations drawn from the loop's step randomness (so a resumed run draws the same ones)."""

from __future__ import annotations

import torch


def random_hflip(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Mirror image k left-right where ``u[k] < 0.5`` (``u`` uniform, one per image), as the CM CIFAR-10
    configuration's random horizontal flips."""
    flip = (u < 0.5).to(x.device).reshape(-1, *([1] * (x.ndim - 1)))
    return torch.where(flip, x.flip(-1), x)
