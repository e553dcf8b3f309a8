"""Rectified-flow time convention and its one converter to diffusers.

Convention of the studio (InstaFlow, Liu et al. 2023, sec. 2; Rectified Flow, Liu et al.
2022, eq. 1): x_t = t x1 + (1 - t) x0 with x0 ~ N(0, I) noise at t = 0 and x1 data at t = 1;
the velocity is v = dx_t/dt = x1 - x0; the UNet receives the timestep (1 - t) * 1000, so
1000 means pure noise as in Stable Diffusion.

On disk a flow UNet is stored in diffusers' flow-matching convention: its output is
noise - data = -v (``prediction_type="flow_prediction"``, sigma = 1 - t). That is the whole
conversion; it lives with the other parameterisations in ``studio.diffusion.adapter``
(``flow_velocity`` negates the UNet output).

Export pairing. A flow pipeline is a plain ``StableDiffusionPipeline`` whose scheduler is
``DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction",
solver_order=1)``. First-order DPM-Solver(++) is DDIM, and DDIM on the linear path x_t above
is exactly Euler (x_s + (t - s) v = t x1_hat + (1 - t) x0_hat), so plain diffusers runs the
studio's Euler sampler. Deviation forced by that scheduler's grid: its sigmas are
0.999 (1 - i/N), i < N, then 0, so the ODE starts at t = 0.001 rather than 0, and the UNet
receives integer timesteps int(1000 sigma_i) (999 for the first step). The studio samples,
trains the one-step student and measures straightness on exactly this grid.
"""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import DPMSolverMultistepScheduler

from studio.diffusion.adapter import append_dims

NUM_TRAIN_TIMESTEPS = 1000
FLOW_PREDICTION = "flow_prediction"


def flow_scheduler() -> DPMSolverMultistepScheduler:
    """The scheduler saved with 2-RF and student pipelines (see the module docstring)."""
    return DPMSolverMultistepScheduler(num_train_timesteps=NUM_TRAIN_TIMESTEPS, use_flow_sigmas=True,
                                       prediction_type=FLOW_PREDICTION, flow_shift=1.0, solver_order=1,
                                       algorithm_type="dpmsolver++", final_sigmas_type="zero",
                                       lower_order_final=True)


def is_flow(scheduler_config) -> bool:
    """Whether a pipeline's scheduler config describes a flow (velocity) model."""
    return scheduler_config.get("prediction_type") == FLOW_PREDICTION


def unet_timestep(t: torch.Tensor) -> torch.Tensor:
    """The timestep the UNet receives at flow time t: (1 - t) * 1000."""
    return (1.0 - t) * NUM_TRAIN_TIMESTEPS


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = t x1 + (1 - t) x0 (Rectified Flow, eq. 1), t broadcast per sample."""
    t = append_dims(t, x0.ndim).to(x0.dtype)
    return t * x1 + (1.0 - t) * x0


def time_grid(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, timesteps) of an N-step sample: t has N + 1 flow times, timesteps the N UNet inputs.

    Taken from the export scheduler itself, so the studio and plain diffusers share one grid.
    """
    sched = flow_scheduler()
    sched.set_timesteps(steps)
    return 1.0 - sched.sigmas.double(), sched.timesteps.clone()


def euler(velocity_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
          grid: tuple[torch.Tensor, torch.Tensor], callback: Callable[[int, torch.Tensor], None] | None = None
          ) -> torch.Tensor:
    """Euler on dx/dt = v: x_{i+1} = x_i + (t_{i+1} - t_i) v(x_i, timestep_i) (Rectified Flow, sec. 2.1).

    ``grid`` is (t, timesteps) as :func:`time_grid` returns it; ``velocity_fn(x, timestep)``
    returns v = x1 - x0 given the model's timestep; ``callback(i, v)`` sees every step's velocity.
    """
    t, timesteps = grid
    for i in range(len(timesteps)):
        v = velocity_fn(x, timesteps[i].to(x.device))
        if callback is not None:
            callback(i, v)
        x = x + float(t[i + 1] - t[i]) * v
    return x
