"""One denoiser contract for every method, and the one home of parameterisation math.

``Denoiser(unet, prediction_type)(x, t, cond)`` is a diffusers UNet's raw output; the
functions below turn any prediction into the quantity a method needs, and
``ConsistencyDenoiser`` wraps a ``UNet2DModel`` in the consistency parameterisation. Each
prediction kind supplies only its own conversion (as k-diffusion's ``external.py`` has each
kind supply its scalings); every method and sampler calls these instead of its own.

Time convention of this module: ``t`` is whatever the wrapped network was trained with (for
Stable Diffusion the DDPM timestep in [0, 1000), 999 = most noise); ``alpha``, ``sigma`` are the
VP coefficients of x_t = alpha x0 + sigma eps with alpha^2 + sigma^2 = 1. Each method states its
own convention at the top of its file.

Prediction types (``prediction_type``):
- ``epsilon``: the noise eps (DDPM, Ho et al. 2020, eq. 4);
- ``v_prediction``: v = alpha eps - sigma x0 (Salimans & Ho 2022, sec. 4);
- ``sample``: x0 itself (diffusers' name);
- ``flow_prediction``: diffusers' flow-matching output noise - data, i.e. minus the velocity
  v = x1 - x0 of x_t = t x1 + (1 - t) x0 (x0 noise, x1 data; Rectified Flow, Liu et al. 2022,
  eq. 1); ``studio.diffusion.flow`` holds that time convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample", "flow_prediction")


def append_dims(v, ndim: int) -> torch.Tensor:
    """A per-sample value (shape (B,) or scalar) shaped (B, 1, ..., 1) to broadcast over ``ndim`` dims."""
    v = torch.as_tensor(v)
    return v.reshape(-1, *([1] * (ndim - 1)))


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


def to_x0(pred, x, prediction_type: str, alpha=None, sigma=None, t=None) -> torch.Tensor:
    """The clean-sample estimate implied by a prediction.

    epsilon: x0 = (x - sigma eps) / alpha; v: x0 = alpha x - sigma v (alpha^2 + sigma^2 = 1);
    sample: x0 itself; flow_prediction: data x1 = x_t - (1 - t) u with u = noise - data, since
    x_t = t x1 + (1 - t) x0 (``t`` is flow time here).
    """
    if prediction_type == "epsilon":
        return (x - sigma * pred) / alpha
    if prediction_type == "v_prediction":
        return alpha * x - sigma * pred
    if prediction_type == "sample":
        return pred
    if prediction_type == "flow_prediction":
        return x - (1 - t) * pred
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def to_epsilon(pred, x, prediction_type: str, alpha, sigma) -> torch.Tensor:
    """The noise estimate of a VP prediction: epsilon itself; v: eps = alpha v + sigma x
    (from v = alpha eps - sigma x0 and x = alpha x0 + sigma eps); sample: eps = (x - alpha x0) / sigma."""
    if prediction_type == "epsilon":
        return pred
    if prediction_type == "v_prediction":
        return alpha * pred + sigma * x
    if prediction_type == "sample":
        return (x - alpha * pred) / sigma
    raise ValueError(f"to_epsilon takes a VP prediction (epsilon, v_prediction, sample), not {prediction_type!r}")


def flow_velocity(unet_output: torch.Tensor) -> torch.Tensor:
    """InstaFlow's v = x1 - x0 from a UNet stored in diffusers' flow convention (output noise - data)."""
    return -unet_output


def vp_flow_velocity(pred, x, prediction_type: str, alpha, sigma) -> torch.Tensor:
    """A VP model's probability-flow velocity in flow coordinates: with y = x / (alpha + sigma) at
    t = alpha / (alpha + sigma), y lies on t x1 + (1 - t) x0 and dy/dt = x1_hat - eps_hat (DDIM is
    exactly Euler in these coordinates; Rectified Flow, Liu et al. 2022, sec. 2.2)."""
    return to_x0(pred, x, prediction_type, alpha, sigma) - to_epsilon(pred, x, prediction_type, alpha, sigma)


# -- the consistency parameterisation (CM, Song et al. 2023, sec. 3; iCT, Song & Dhariwal 2023, sec. 2)

def consistency_scalings(sigma: torch.Tensor, sigma_data: float, sigma_min: float):
    """(c_skip, c_out, c_in): c_skip = sd^2 / ((s - s_min)^2 + sd^2), c_out = sd (s - s_min) / sqrt(sd^2 + s^2),
    c_in = 1 / sqrt(s^2 + sd^2). At s = s_min, c_skip = 1 and c_out = 0 exactly, so f(x, s_min) = x."""
    c_skip = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
    c_out = sigma_data * (sigma - sigma_min) / torch.sqrt(sigma_data**2 + sigma**2)
    c_in = 1.0 / torch.sqrt(sigma**2 + sigma_data**2)
    return c_skip, c_out, c_in


def consistency_noise(sigma: torch.Tensor, scale: float = 250.0) -> torch.Tensor:
    """The network's noise input c_noise = scale ln(sigma): 250 as diffusers' ``CMStochasticIterativeScheduler.sigma_to_t``
    (the CM ImageNet/LSUN code's 1000 * 0.25 ln sigma), 0.25 as EDM (Karras et al. 2022, Table 1) and the CM
    CIFAR-10 code. Returned as a float tensor: a UNet2DModel casts a Python number to an integer timestep."""
    return scale * torch.log(sigma + 1e-44)


@dataclass
class ConsistencyDenoiser:
    """f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)) around a diffusers
    ``UNet2DModel`` F; ``sigma`` is per sample. The scalings are computed in float32.

    With ``sigma_min`` = 0 this is EDM's denoiser D(x; sigma) (Karras et al. 2022, eq. 7 with the Table 1
    preconditioning), which is what the EDM diffusion model and ECT's starting point use."""

    unet: torch.nn.Module
    sigma_data: float
    sigma_min: float
    noise_scale: float = 250.0

    def __call__(self, x: torch.Tensor, sigma, class_labels=None) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float32).expand(x.shape[0])
        c_skip, c_out, c_in = (append_dims(c, x.ndim).to(x.dtype)
                               for c in consistency_scalings(sigma, self.sigma_data, self.sigma_min))
        out = self.unet(c_in * x, consistency_noise(sigma, self.noise_scale), class_labels=class_labels).sample
        return c_skip * x + c_out * out
