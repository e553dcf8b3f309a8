"""Streaming feature statistics (mean and covariance) and their ``.npz`` files.

Features are accumulated as float64 sums (sum x, sum x x^T, n), so memory is O(d^2) whatever
N is. The covariance is the unbiased one (divide by n - 1), as ``np.cov`` in pytorch-fid and
clean-fid. Files hold ``mu`` and ``sigma`` (readable by pytorch-fid and clean-fid) plus ``n``
and a JSON ``meta`` string describing how they were made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from studio import StudioError
from studio.files import atomic_path


@dataclass
class FeatureStats:
    dims: int
    n: int = 0
    total: torch.Tensor = field(default=None)
    outer: torch.Tensor = field(default=None)

    def __post_init__(self):
        if self.total is None:
            self.total = torch.zeros(self.dims, dtype=torch.float64)
            self.outer = torch.zeros(self.dims, self.dims, dtype=torch.float64)

    def update(self, features: torch.Tensor) -> None:
        f = features.detach().to("cpu", torch.float64).reshape(features.shape[0], -1)
        self.total += f.sum(0)
        self.outer += f.T @ f
        self.n += f.shape[0]

    def mu_sigma(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n < 2:
            raise StudioError(f"FID needs at least 2 images per side, got {self.n}")
        mu = self.total / self.n
        sigma = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return mu.numpy(), sigma.numpy()


def save_stats(path, mu: np.ndarray, sigma: np.ndarray, n: int, meta: dict) -> Path:
    """Write an ``.npz`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: numpy adds no .npz suffix
        np.savez(f, mu=mu, sigma=sigma, n=np.int64(n), meta=np.array(json.dumps(meta)))
    return Path(path)


def load_stats(path) -> tuple[np.ndarray, np.ndarray, int, dict]:
    """(mu, sigma, n, meta) from an ``.npz`` with at least ``mu`` and ``sigma`` (no pickles)."""
    path = Path(path)
    if not path.is_file():
        raise StudioError(f"statistics file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            mu, sigma = z["mu"], z["sigma"]
            n = int(z["n"]) if "n" in z.files else -1
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
    except (KeyError, ValueError, OSError) as e:
        raise StudioError(f"{path} is not a statistics file with 'mu' and 'sigma': {e}") from None
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise StudioError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
    return mu, sigma, n, meta
