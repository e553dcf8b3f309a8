"""Distances shared by the methods: the pseudo-Huber metric, written once.

d(a, b) = sqrt(||a - b||_2^2 + c^2) - c on each sample's whole vector (iCT, Song & Dhariwal 2023,
sec. 3.3), with c = 0.00054 sqrt(dim) by default: 0.0299 for CIFAR-10's dim = 3072. It is
L2-like for large differences and quadratic near zero, so outlier pairs weigh less than in L2.
"""

from __future__ import annotations

import math

import torch


def huber_c(dim: int) -> float:
    """c = 0.00054 sqrt(d) for data of dimension d (iCT sec. 3.3)."""
    return 0.00054 * math.sqrt(dim)


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float | None = None) -> torch.Tensor:
    """Per-sample sqrt(||a - b||^2 + c^2) - c in float32, shape (batch,); ``c`` defaults to :func:`huber_c`."""
    d = (a.float() - b.float()).flatten(1)
    c = huber_c(d.shape[1]) if c is None else c
    return torch.sqrt(d.pow(2).sum(1) + c * c) - c
