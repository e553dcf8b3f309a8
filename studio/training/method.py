"""The method contract: what a method gives the shared loop and the driver.

For the loop (``studio.training.loop.train``): the modules to train, a dataset, a loss and
optional hooks. For the driver (``studio.training.driver.run``): an export that writes the
artefact, and the model info recorded beside it. Methods never copy the loop or the driver.

Several networks. A method that trains more than one network with their own optimizers (a
generator and a critic, say) names its optimizer groups in :meth:`Method.groups` and says in
:meth:`Method.updates` which groups step at a given step, in order: for example "critic" K times
per "generator" update is ``["critic"]`` on K of every K + 1 steps and ``["generator"]`` on the
last. The loop then runs, for each listed group: the group's micro-batches (accumulation), its
loss :meth:`Method.group_loss`, clipping of the group's parameters, its optimizer step and its
EMA. Every group's optimizer and EMA are checkpointed and resumed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from studio.training.randomness import StepRandom


@dataclass(frozen=True)
class Group:
    """One optimizer over some of the method's trained modules."""

    modules: tuple[str, ...]
    lr_scale: float = 1.0  # this group's learning rate is --lr * lr_scale (and the schedule)
    ema: bool = True  # keep an EMA of these modules (when --ema-decay > 0)


class Method:
    """Base class. ``loss`` receives the *prepared* modules (DDP-wrapped under several processes)."""

    name = "method"

    # -- the training contract --------------------------------------------------------------------
    def trainable(self) -> dict[str, torch.nn.Module]:
        """Modules whose parameters the optimizers update (and the EMA tracks)."""
        raise NotImplementedError

    def groups(self) -> dict[str, Group]:
        """Optimizer groups; by default one, ``main``, over every trained module."""
        return {"main": Group(tuple(self.trainable()))}

    def updates(self, step: int) -> list[str]:
        """The groups that step at optimizer step ``step`` (0-based), in order; by default all."""
        return list(self.groups())

    def dataset(self):
        """An object with ``__len__`` and ``batch(indices) -> dict``."""
        raise NotImplementedError

    def setup(self, device: torch.device) -> None:
        """Move frozen helpers (e.g. a VAE or text encoder) to ``device``; called once before training."""

    def loss(self, modules: dict[str, torch.nn.Module], batch: dict, rand: StepRandom):
        """Return ``(loss, logs)``: a scalar tensor and a dict of floats for the tracker."""
        raise NotImplementedError

    def group_loss(self, group: str, modules: dict[str, torch.nn.Module], batch: dict, rand: StepRandom):
        """The loss of one group's update; a one-group method only implements :meth:`loss`."""
        return self.loss(modules, batch, rand)

    def on_step_start(self, step: int) -> None:
        """Called before the micro-batches of optimizer step ``step`` (0-based); e.g. for curricula."""

    def on_step_end(self, step: int, logs: dict) -> None:
        """Called after the optimizer (and EMA) updates of step ``step`` (0-based)."""

    # -- the artefact contract (used by the driver, on the main process) ------------------------
    def export(self, result, out: Path) -> None:
        """Write the artefact into ``out``: ``result`` is the loop's ``TrainResult`` (``modules`` with the
        EMA weights where kept, ``step``, ``seconds``); a stage without training gets step 0."""

    def model_info(self) -> dict | None:
        """What ``studio_model.json`` records: ``kind``, recommended ``steps`` and ``guidance`` (from the
        config) and any extra facts; None for an artefact that is not a pipeline."""
        return None


def frozen_call(module: torch.nn.Module, *args, **kwargs):
    """``module(*args, **kwargs)`` with its parameters detached: gradients reach the inputs, never the weights.
    For a loss that runs another group's network (a discriminator in the generator's update): nothing is
    accumulated into that network, also under DDP, whose wrapper and hooks are bypassed. Gradient checkpointing
    (diffusers' ``gradient_checkpointing`` flags) is off for the call: its recomputation in the backward pass
    would see the module's own weights, not the detached ones (DMD2 likewise checkpoints its fake score only
    in the fake score's own update)."""
    plain = getattr(module, "module", module)
    state = {**{n: p.detach() for n, p in plain.named_parameters()}, **dict(plain.named_buffers())}
    flagged = [m for m in plain.modules() if getattr(m, "gradient_checkpointing", False) is True]
    for m in flagged:
        m.gradient_checkpointing = False
    try:
        return torch.func.functional_call(plain, state, args, kwargs)
    finally:
        for m in flagged:
            m.gradient_checkpointing = True
