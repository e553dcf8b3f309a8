"""One denoiser contract for every method: ``model(x, t, cond) -> prediction``.

Time convention of this module: ``t`` is whatever the wrapped network was trained with
(for Stable Diffusion, the DDPM timestep in [0, 1000), 999 = most noise). The adapter
does not rescale time; each method states its own convention at the top of its file.

Prediction types (``prediction_type``):
- ``epsilon``: the noise, x_t = alpha_t x0 + sigma_t eps (DDPM, Ho et al. 2020, eq. 4);
- ``v_prediction``: v = alpha_t eps - sigma_t x0 (Salimans & Ho 2022, sec. 4);
- ``flow_prediction``: diffusers' flow-matching output noise - data, i.e. minus the velocity
  v = x1 - x0 of x_t = t x1 + (1-t) x0 (x0 noise, x1 data; Rectified Flow, Liu et al. 2022,
  eq. 1). ``studio.diffusion.flow`` holds that convention and its conversion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction", "flow_prediction")


def classifier_free_guidance(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """uncond + w (cond - uncond): Ho & Salimans 2022, eq. 6 written as diffusers does (w = 1 + their w)."""
    return uncond + scale * (cond - uncond)


@dataclass
class Denoiser:
    """Wraps a diffusers UNet (``UNet2DConditionModel`` or ``UNet2DModel``) as ``f(x, t, cond)``."""

    unet: torch.nn.Module
    prediction_type: str = "epsilon"

    def __post_init__(self):
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")

    def __call__(self, x: torch.Tensor, t, cond: torch.Tensor | None = None) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if cond is None:
            return self.unet(x, t).sample
        return self.unet(x, t, encoder_hidden_states=cond).sample

    def guided(self, x, t, cond, uncond=None, guidance: float = 1.0) -> torch.Tensor:
        """Classifier-free guidance, implemented once: one batched pass over [uncond, cond]."""
        if uncond is None or guidance == 1.0:
            return self(x, t, cond)
        t = torch.as_tensor(t, device=x.device)
        t2 = torch.cat([t.expand(x.shape[0])] * 2) if t.ndim == 0 else torch.cat([t, t])
        out_u, out_c = self(torch.cat([x, x]), t2, torch.cat([uncond, cond])).chunk(2)
        return classifier_free_guidance(out_u, out_c, guidance)


def predict_x0(pred: torch.Tensor, x: torch.Tensor, prediction_type: str, alpha=None, sigma=None, t=None):
    """The clean-sample estimate implied by a prediction.

    epsilon: x0 = (x - sigma eps) / alpha; v: x0 = alpha x - sigma v (alpha^2 + sigma^2 = 1);
    flow_prediction: data x1 = x_t - (1 - t) u with u = noise - data, since x_t = t x1 + (1 - t) x0.
    """
    if prediction_type == "epsilon":
        return (x - sigma * pred) / alpha
    if prediction_type == "v_prediction":
        return alpha * x - sigma * pred
    if prediction_type == "flow_prediction":
        return x - (1 - t) * pred
    raise ValueError(f"unknown prediction_type {prediction_type!r}")
