"""SRe2L's BatchNorm-statistics regulariser R_BN (Yin et al. 2023, Sec. 3.2 "Recover").

For every BatchNorm2d layer l of the frozen teacher, with the synthetic batch's per-channel
mean mu_l and biased variance var_l of the layer's *input*:

    R_BN = sum_l  w_l * ( ||mu_l - running_mean_l||_2 + ||var_l - running_var_l||_2 )

(L2 norms, not squared), with w_1 = first-BN multiplier (10 in SRe2L/CDA) and w_l = 1 otherwise.
"""

from __future__ import annotations

import torch
from torch import nn


class BNStatsLoss:
    """Forward hooks on every BatchNorm2d of ``model``; ``value()`` is R_BN of the last forward."""

    def __init__(self, model: nn.Module, first_multiplier: float = 10.0):
        self.layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        if not self.layers:
            raise ValueError("the teacher has no BatchNorm2d layer: SRe2L/CDA recovery needs BN statistics")
        self.weights = [first_multiplier] + [1.0] * (len(self.layers) - 1)
        self.terms: list[torch.Tensor | None] = [None] * len(self.layers)
        self.handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.layers)]

    def _hook(self, i: int):
        def hook(module, inputs, _output):
            x = inputs[0].float()
            mean = x.mean(dim=(0, 2, 3))
            var = x.var(dim=(0, 2, 3), unbiased=False)
            self.terms[i] = (torch.linalg.vector_norm(mean - module.running_mean)
                             + torch.linalg.vector_norm(var - module.running_var))
        return hook

    def value(self) -> torch.Tensor:
        if any(t is None for t in self.terms):
            raise RuntimeError("no forward pass through the teacher since the hooks were installed")
        return sum(w * t for w, t in zip(self.weights, self.terms))

    def per_layer(self) -> list[float]:
        return [float(t) for t in self.terms]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
