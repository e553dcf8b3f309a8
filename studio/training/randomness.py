"""Reproducible randomness keyed by (seed, step, micro-batch), not by process count.

Every process draws the *global* micro-batch's random numbers from one generator and
keeps its own rows, so sample k of step s gets the same noise whether the global batch
is split over 1 or 2 processes, and a resumed run draws exactly what it would have drawn.
"""

from __future__ import annotations

import hashlib

import torch


def stream_seed(*keys) -> int:
    """A 63-bit seed from any tuple of keys (stable across runs and machines)."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class StepRandom:
    """Random draws for this process's rows of one global micro-batch."""

    def __init__(self, seed: int, step: int, micro: int, rank: int, world: int, local_batch: int,
                 device: torch.device | str = "cpu", *keys):
        """``keys``: more of the stream's key (the loop adds the optimizer group of a several-network method)."""
        self.rows = slice(rank * local_batch, (rank + 1) * local_batch)
        self.global_batch = world * local_batch
        self.device = torch.device(device)
        self.generator = torch.Generator(self.device).manual_seed(stream_seed(seed, "batch", step, micro, *keys))

    def randn(self, *shape, dtype=torch.float32) -> torch.Tensor:
        """Standard normal, shape (local_batch, *shape)."""
        g = torch.randn((self.global_batch, *shape), generator=self.generator, device=self.device, dtype=dtype)
        return g[self.rows]

    def rand(self, *shape, dtype=torch.float32) -> torch.Tensor:
        """Uniform on [0, 1), shape (local_batch, *shape)."""
        g = torch.rand((self.global_batch, *shape), generator=self.generator, device=self.device, dtype=dtype)
        return g[self.rows]

    def randint(self, low: int, high: int, *shape) -> torch.Tensor:
        """Integers in [low, high), shape (local_batch, *shape)."""
        g = torch.randint(low, high, (self.global_batch, *shape), generator=self.generator, device=self.device)
        return g[self.rows]
