"""Consistency sampling (CM, Song et al. 2023, Algorithm 1) and the diffusers export.

One step: x = f(sigma_max z, sigma_max). Multistep over descending sigmas s_1 > s_2 > ...:
x <- f(x + sqrt(s^2 - sigma_min^2) z, s), denoised outputs clipped to [-1, 1] as diffusers does.
Image k draws its initial noise and then each step's noise from one generator seeded
``seed + k``, in that order, exactly as ``ConsistencyModelPipeline`` does with a generator list,
so the exported pipeline gives the same images.

Export: ``ConsistencyModelPipeline(unet, CMStochasticIterativeScheduler)`` with the model's sigma_data.
That scheduler feeds the UNet c_noise = 250 ln(sigma) (``sigma_to_t``), and a ``UNet2DModel``'s
positional embedding fixes its first frequency at 1 (the Fourier one divides the output by the
timestep), so a model trained with another noise scale (EDM's and the CM CIFAR-10 code's 0.25)
cannot be written as a pipeline that samples like the studio: :func:`export_pipeline` refuses it
and :func:`save_model` writes the studio model folder alone (``consistency.model``). Limit of that
scheduler: it samples only sigmas on its Karras grid of ``num_train_timesteps`` points (here
the final curriculum N), chosen by integer ``timesteps`` indices; an arbitrary float sigma such
as the 2-step default 0.821 is used exactly by the studio and by plain diffusers only as the
nearest grid point (:func:`diffusers_timesteps` gives the indices and those sigmas).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import CMStochasticIterativeScheduler, ConsistencyModelPipeline

from studio import StudioError
from studio.diffusion.noise import image_generators, image_noise

from studio.models.backbone import Components, save_pipeline

from consistency.model import Precond, consistency_model
from consistency.recipe import RHO, SIGMA_MAX, SIGMA_MIN, karras_sigmas

TWO_STEP_SIGMA_MID = 0.821
DIFFUSERS_NOISE_SCALE = 250.0  # CMStochasticIterativeScheduler.sigma_to_t


def default_sigmas(steps: int) -> list[float]:
    """sigma_max alone for 1 step; (sigma_max, 0.821) for 2 (iCT sec. 4); else a Karras spread."""
    if steps < 1:
        raise StudioError(f"steps must be at least 1, got {steps}")
    if steps == 1:
        return [SIGMA_MAX]
    if steps == 2:
        return [SIGMA_MAX, TWO_STEP_SIGMA_MID]
    return karras_sigmas(steps + 1).flip(0)[:-1].tolist()


@torch.no_grad()
def sample(unet, num: int, seed: int = 0, sigmas: list[float] | None = None, class_labels=None,
           clip: bool = True, precond: Precond = Precond()) -> torch.Tensor:
    """``num`` images in [-1, 1], (num, C, H, W); ``sigmas`` descending, the first is the start level."""
    sigmas = list(sigmas or default_sigmas(1))
    if any(b >= a for a, b in zip(sigmas, sigmas[1:])) or sigmas[-1] < SIGMA_MIN:
        raise StudioError(f"sigmas must descend and stay >= {SIGMA_MIN}, got {sigmas}")
    cfg = unet.config
    shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
    device, dtype = unet.device, unet.dtype
    f = consistency_model(unet, precond)
    gens = image_generators(range(seed, seed + num))
    x = image_noise(shape, gens, device, dtype) * sigmas[0]
    if class_labels is not None:
        class_labels = torch.as_tensor(class_labels, device=device).reshape(-1).expand(num)
    out = None
    for j, s in enumerate(sigmas):
        if j > 0:
            x = out + image_noise(shape, gens, device, dtype) * (s**2 - SIGMA_MIN**2) ** 0.5
        out = f(x, torch.full((num,), s, device=device), class_labels)
        out = out.clamp(-1, 1) if clip else out
    return out


def export_scheduler(num_train_timesteps: int, precond: Precond = Precond()) -> CMStochasticIterativeScheduler:
    return CMStochasticIterativeScheduler(num_train_timesteps=num_train_timesteps, sigma_min=SIGMA_MIN,
                                          sigma_max=SIGMA_MAX, sigma_data=precond.sigma_data, rho=RHO,
                                          clip_denoised=True)


def export_pipeline(unet, num_train_timesteps: int, precond: Precond = Precond()) -> ConsistencyModelPipeline:
    """The plain-diffusers pipeline; refused (one line) for a noise scale the scheduler cannot express."""
    if precond.noise_scale != DIFFUSERS_NOISE_SCALE:
        raise StudioError(f"c_noise = {precond.noise_scale:g} ln(sigma) cannot be exported as a diffusers "
                          f"ConsistencyModelPipeline: its scheduler feeds the UNet {DIFFUSERS_NOISE_SCALE:g} "
                          "ln(sigma); "
                          "sample it with studio ict sample, or train with --noise-scale 250")
    return ConsistencyModelPipeline(unet=unet, scheduler=export_scheduler(num_train_timesteps, precond))


def save_model(unet, out, num_train_timesteps: int, precond: Precond) -> None:
    """The model folder: a ConsistencyModelPipeline where diffusers can express ``precond``, else ``unet/`` alone."""
    if precond.noise_scale == DIFFUSERS_NOISE_SCALE:
        save_pipeline(export_pipeline(unet, num_train_timesteps, precond), out)
    else:
        save_pipeline(Components(unet=unet), out)


def diffusers_timesteps(sigmas: list[float], num_train_timesteps: int) -> tuple[list[int], list[float]]:
    """``timesteps=`` for ``ConsistencyModelPipeline`` giving the grid sigmas nearest to ``sigmas`` (descending).

    The scheduler's index j means sigma_j on the Karras grid from sigma_max (j = 0) to sigma_min
    (j = N - 1), and it expects the indices in descending order: [j_last, ..., j_first].
    Returns (timesteps, the sigmas they stand for).
    """
    grid = karras_sigmas(num_train_timesteps).flip(0).numpy()
    idx = [int(np.abs(grid - s).argmin()) for s in sigmas]
    return idx[::-1], [float(grid[j]) for j in idx]
