"""The Improved Consistency Training recipe (Song & Dhariwal 2023, "iCT"), one formula per function.

Conventions: EDM/CM noise levels sigma (x_sigma = x + sigma z), sigmas ascending
(sigma_1 = sigma_min < ... < sigma_N = sigma_max), sigma_data 0.5, sigma_min 0.002,
sigma_max 80, rho 7. The consistency parameterisation itself (c_skip, c_out, c_in and
c_noise = 250 ln(sigma), what diffusers' ``CMStochasticIterativeScheduler`` feeds a
``UNet2DModel``) lives in ``studio.diffusion.adapter``; the pseudo-Huber metric with
c = 0.00054 sqrt(d) in ``studio.diffusion.losses``.
"""

from __future__ import annotations

import math

import torch

from studio.diffusion.edm import karras_sigmas  # noqa: F401  (eq. 5, shared with EDM)

SIGMA_DATA, SIGMA_MIN, SIGMA_MAX, RHO = 0.5, 0.002, 80.0, 7.0
P_MEAN, P_STD = -1.1, 2.0
S0, S1 = 10, 1280




def discretization_steps(k: int, total: int, s0: int = S0, s1: int = S1) -> int:
    """N(k) = min(s0 2^floor(k / K'), s1) + 1 with K' = floor(K / (log2 floor(s1/s0) + 1)) (iCT sec. 3.4)."""
    k_prime = math.floor(total / (math.log2(math.floor(s1 / s0)) + 1))
    return min(s0 * 2 ** math.floor(k / max(k_prime, 1)), s1) + 1


def lognormal_weights(sigmas: torch.Tensor, p_mean: float = P_MEAN, p_std: float = P_STD) -> torch.Tensor:
    """p(sigma_i) proportional to erf((ln s_{i+1} - P_mean)/(sqrt2 P_std)) - erf((ln s_i - P_mean)/(sqrt2 P_std)),
    i = 1..N-1 (iCT sec. 3.5, the discretised lognormal with P_mean -1.1, P_std 2.0); sums to 1."""
    cdf = torch.erf((torch.log(sigmas) - p_mean) / (math.sqrt(2.0) * p_std))
    w = cdf[1:] - cdf[:-1]
    return w / w.sum()


def loss_weights(sigmas: torch.Tensor) -> torch.Tensor:
    """lambda(sigma_i) = 1 / (sigma_{i+1} - sigma_i), i = 1..N-1 (iCT sec. 3.1)."""
    return 1.0 / (sigmas[1:] - sigmas[:-1])

