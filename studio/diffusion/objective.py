"""The Stable Diffusion training objective (Rombach et al. 2022, eq. 2; Ho et al. 2020, eq. 14).

Time convention of this module: DDPM integer timesteps t in [0, T), T = 1000, with
x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Ho et al. 2020, eq. 4) and SD's scaled-linear
betas. The network predicts eps (``epsilon``) or v = sqrt(abar) eps - sqrt(1 - abar) x0
(``v_prediction``, Salimans & Ho 2022). The loss is the unweighted MSE ("L_simple").
Works in any space: SD latents, or pixels for a pixel-space diffusion model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from studio.training.randomness import StepRandom


def noise_schedule(scheduler_config: dict) -> DDPMScheduler:
    """A DDPM scheduler with the pipeline's betas, used only for ``add_noise`` / ``get_velocity``."""
    return DDPMScheduler.from_config(scheduler_config)


def diffusion_loss(predict, x0: torch.Tensor, schedule: DDPMScheduler, rand: StepRandom,
                   prediction_type: str = "epsilon") -> torch.Tensor:
    """MSE between ``predict(x_t, t)`` and the target, t ~ U{0, ..., T-1}, eps ~ N(0, I)."""
    eps = rand.randn(*x0.shape[1:]).to(x0.dtype)
    t = rand.randint(0, schedule.config.num_train_timesteps)
    x_t = schedule.add_noise(x0, eps, t)
    if prediction_type == "epsilon":
        target = eps
    elif prediction_type == "v_prediction":
        target = schedule.get_velocity(x0, eps, t)
    else:
        raise ValueError(f"diffusion_loss supports epsilon and v_prediction, not {prediction_type!r}")
    return F.mse_loss(predict(x_t, t).float(), target.float())
