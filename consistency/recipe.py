"""The Improved Consistency Training recipe (Song & Dhariwal 2023, "iCT"), one formula per function.

Conventions: EDM/CM noise levels sigma (x_sigma = x + sigma z), sigmas ascending
(sigma_1 = sigma_min < ... < sigma_N = sigma_max), sigma_data 0.5, sigma_min 0.002,
sigma_max 80, rho 7. The network sees c_in(sigma) x and c_noise = 250 ln(sigma), which is what
diffusers' ``CMStochasticIterativeScheduler`` feeds a ``UNet2DModel``.
"""

from __future__ import annotations

import math

import torch

SIGMA_DATA, SIGMA_MIN, SIGMA_MAX, RHO = 0.5, 0.002, 80.0, 7.0
P_MEAN, P_STD = -1.1, 2.0
S0, S1 = 10, 1280


def scalings(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA, sigma_min: float = SIGMA_MIN):
    """(c_skip, c_out, c_in) of the consistency parameterisation (CM, Song et al. 2023, sec. 3; iCT sec. 2):
    c_skip = sd^2 / ((s - s_min)^2 + sd^2), c_out = sd (s - s_min) / sqrt(sd^2 + s^2), c_in = 1 / sqrt(s^2 + sd^2).
    At s = s_min, c_skip = 1 and c_out = 0 exactly, so f(x, s_min) = x (the boundary condition)."""
    c_skip = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
    c_out = sigma_data * (sigma - sigma_min) / torch.sqrt(sigma_data**2 + sigma**2)
    c_in = 1.0 / torch.sqrt(sigma**2 + sigma_data**2)
    return c_skip, c_out, c_in


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    """The network's noise input 250 ln(sigma) (diffusers ``CMStochasticIterativeScheduler.sigma_to_t``)."""
    return 250.0 * torch.log(sigma + 1e-44)


def karras_sigmas(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO) -> torch.Tensor:
    """Ascending sigma_i = (s_min^(1/rho) + (i-1)/(N-1) (s_max^(1/rho) - s_min^(1/rho)))^rho, i = 1..N
    (Karras et al. 2022, eq. 5; iCT sec. 2), in float64."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (lo + ramp * (hi - lo)) ** rho


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


def huber_c(dim: int) -> float:
    """c = 0.00054 sqrt(d) for data of dimension d (iCT sec. 3.3): 0.0299 for CIFAR-10's d = 3072."""
    return 0.00054 * math.sqrt(dim)


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
    """Per-sample sqrt(||a - b||_2^2 + c^2) - c over the whole sample vector (iCT sec. 3.3), shape (batch,)."""
    d = (a.float() - b.float()).flatten(1)
    return torch.sqrt(d.pow(2).sum(1) + c * c) - c
