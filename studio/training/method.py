"""What a method plugs into the shared loop: modules to train, data, a loss, hooks.

Methods never copy the loop (``studio.training.loop.train``); they subclass :class:`Method`.
"""

from __future__ import annotations

import torch

from studio.training.randomness import StepRandom


class Method:
    """Base class. ``loss`` receives the *prepared* modules (DDP-wrapped under several processes)."""

    name = "method"

    def trainable(self) -> dict[str, torch.nn.Module]:
        """Modules whose parameters the optimizer updates (and the EMA tracks)."""
        raise NotImplementedError

    def dataset(self):
        """An object with ``__len__`` and ``batch(indices) -> dict``."""
        raise NotImplementedError

    def setup(self, device: torch.device) -> None:
        """Move frozen helpers (e.g. a VAE or text encoder) to ``device``; called once before training."""

    def loss(self, modules: dict[str, torch.nn.Module], batch: dict, rand: StepRandom):
        """Return ``(loss, logs)``: a scalar tensor and a dict of floats for the tracker."""
        raise NotImplementedError

    def on_step_start(self, step: int) -> None:
        """Called before the micro-batches of optimizer step ``step`` (0-based); e.g. for curricula."""

    def on_step_end(self, step: int, logs: dict) -> None:
        """Called after the optimizer (and EMA) update of step ``step`` (0-based)."""
