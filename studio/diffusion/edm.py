"""The EDM diffusion objective and sampler (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models"), for any network wrapped as a denoiser D(x; sigma).

Time convention of this module: EDM noise levels sigma, x_sigma = y + sigma n with n ~ N(0, I)
(sigma(t) = t, s(t) = 1: Table 1, "Ours"). The denoiser is ``studio.diffusion.adapter.ConsistencyDenoiser``
with ``sigma_min = 0``: D = c_skip x + c_out F(c_in x; c_noise) with c_skip = sd^2 / (sigma^2 + sd^2),
c_out = sigma sd / sqrt(sigma^2 + sd^2), c_in = 1 / sqrt(sigma^2 + sd^2) (eq. 7, Table 1).

Training (Table 1, "Training"): ln sigma ~ N(P_mean, P_std^2) with P_mean -1.2, P_std 1.2, and the
loss lambda(sigma) ||D(y + n; sigma) - y||^2 with lambda = (sigma^2 + sd^2) / (sigma sd)^2 (eq. 2 and
eq. 8; then lambda c_out^2 = 1, an unweighted loss on F). Sampling: the deterministic Heun sampler
(Algorithm 1) on the steps of eq. 5 with sigma_min 0.002, sigma_max 80, rho 7 and N = 18 (35 network
evaluations, as the paper's CIFAR-10 figures). These are the constants of NVlabs/edm
(training/loss.py ``EDMLoss``, generate.py ``edm_sampler``).
"""

from __future__ import annotations

import math

import torch

from studio.diffusion.adapter import append_dims

SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0
P_MEAN, P_STD = -1.2, 1.2
HEUN_STEPS = 18


def karras_sigmas(n: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO) -> torch.Tensor:
    """Ascending sigma_i = (s_min^(1/rho) + (i-1)/(N-1) (s_max^(1/rho) - s_min^(1/rho)))^rho, i = 1..N
    (Karras et al. 2022, eq. 5; iCT sec. 2), in float64."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (lo + ramp * (hi - lo)) ** rho


def loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2 (Table 1, "Loss weighting")."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def lognormal_sigmas(z: torch.Tensor, p_mean: float = P_MEAN, p_std: float = P_STD) -> torch.Tensor:
    """sigma = exp(P_mean + P_std z) for standard normal ``z`` (Table 1, "Noise distribution")."""
    return torch.exp(p_mean + p_std * z)


def edm_loss(denoise, y: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """E[lambda(sigma) ||D(y + sigma n; sigma) - y||^2] (eq. 2 with Table 1's weighting), as a mean over the
    batch and the pixels (EDM sums over pixels; a mean only rescales the loss by a constant)."""
    d = denoise(y + append_dims(sigma, y.ndim).to(y.dtype) * noise, sigma).float()
    per_pixel = (d - y.float()) ** 2
    return (append_dims(loss_weight(sigma.float(), sigma_data), y.ndim) * per_pixel).mean()


def sampling_sigmas(steps: int = HEUN_STEPS, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                    rho: float = RHO) -> list[float]:
    """t_0 = sigma_max > ... > t_{N-1} = sigma_min, then t_N = 0 (eq. 5 and Algorithm 1)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if steps == 1:
        return [sigma_max, 0.0]
    return [*karras_sigmas(steps, sigma_min, sigma_max, rho).flip(0).tolist(), 0.0]


@torch.no_grad()
def heun_sample(denoise, x: torch.Tensor, sigmas: list[float], heun: bool = True) -> torch.Tensor:
    """Algorithm 1 (deterministic, S_churn = 0) from ``x`` = sigmas[0] n: an Euler step
    x_{i+1} = x_i + (t_{i+1} - t_i) d_i with d_i = (x_i - D(x_i; t_i)) / t_i, corrected by the trapezoid
    rule with d' at t_{i+1} unless t_{i+1} = 0 (2N - 1 evaluations). ``heun=False``: Euler only (N)."""
    for t, t_next in zip(sigmas, sigmas[1:]):
        sig = torch.full((x.shape[0],), t, device=x.device)
        d = (x - denoise(x, sig)) / t
        x_next = x + (t_next - t) * d
        if heun and t_next > 0:
            d2 = (x_next - denoise(x_next, torch.full_like(sig, t_next))) / t_next
            x_next = x + (t_next - t) * 0.5 * (d + d2)
        x = x_next
    return x


def data_rms(batches) -> float:
    """sqrt(E[y^2]) over every pixel of ``batches`` (tensors), the sigma_data a run measures from its data.
    EDM derives its scalings (Appendix B.6) from sigma_data^2 = Var[y] of data it treats as zero-mean;
    what sets the scale of the network's input c_in (y + n) and of its target is the second moment E[y^2],
    so the studio measures that. They differ when the data is far from zero-mean, as Fashion-MNIST padded
    with black is (RMS 0.870, std 0.664 in [-1, 1])."""
    total, count = 0.0, 0
    for b in batches:
        total += float(b.double().pow(2).sum())
        count += b.numel()
    return math.sqrt(total / count)
