"""``studio reflow straightness MODEL``: how straight a model's ODE trajectories are.

Straightness (Rectified Flow, Liu et al. 2022, sec. 2.2; InstaFlow sec. 2):
S(Z) = integral_0^1 E ||(Z_1 - Z_0) - v(Z_t, t)||^2 dt, zero exactly when every trajectory
is a straight line run at constant speed. It is estimated on a fixed batch (noise seeds
``seed + k``, prompts k mod P) with the Euler steps of the model's own sampler, and averaged
over latent elements:
    S = 1/T sum_i (t_{i+1} - t_i) mean ||(Z_end - Z_start) / T - v_i||^2,  T = t_end - t_start,
i.e. on the trajectory rescaled to unit time (T = 0.999 for flows, see ``studio.diffusion.flow``).

A diffusion teacher (epsilon or v prediction, alpha^2 + sigma^2 = 1) is put into the same
time convention: y = x / (alpha + sigma) at t = alpha / (alpha + sigma) lies on the path
t x1 + (1 - t) x0, and its probability-flow velocity is dy/dt = x1_hat - eps_hat (DDIM is
exactly Euler in these coordinates). Its grid is the DDPM timesteps 999 -> 0 in N equal steps,
then t = 1; it starts at SD's x_T = noise, i.e. t = alpha_999 / (alpha_999 + sigma_999).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from studio import StudioError
from studio.cli.schema import validate
from studio.files import check_writable, write_json
from studio.diffusion.adapter import Denoiser, flow_velocity, vp_flow_velocity
from studio.models.backbone import load_pipeline
from studio.data.prompts import prompts_from
from studio.diffusion.flow import euler, is_flow, time_grid
from studio.models.model_info import read_model_info
from studio.diffusion.prompting import encode_prompts
from studio.diffusion.noise import image_noise

from distill.reflow.config import StraightnessConfig


def straightness(z_start: torch.Tensor, z_end: torch.Tensor, t: torch.Tensor, vs: list[torch.Tensor]) -> float:
    """S of one batch of trajectories from their end points, flow times and Euler velocities."""
    span = float(t[-1] - t[0])
    chord = (z_end - z_start) / span
    total = sum(float(t[i + 1] - t[i]) * torch.mean((chord - v) ** 2).item() for i, v in enumerate(vs))
    return total / span


def _teacher_field(pipe, guided, steps: int):
    """(velocity_fn, grid, start scale) of a VP diffusion teacher in flow coordinates."""
    abar = pipe.scheduler.alphas_cumprod.double()
    taus = torch.linspace(len(abar) - 1, 0, steps, dtype=torch.float64)

    def alpha_sigma(tau):
        a = torch.from_numpy(np.asarray(np.interp(np.asarray(tau, dtype=np.float64), np.arange(len(abar)), abar.numpy())))
        return a.sqrt(), (1 - a).sqrt()

    a, s = alpha_sigma(taus)
    t = torch.cat([a / (a + s), torch.ones(1, dtype=torch.float64)])
    prediction = pipe.scheduler.config.get("prediction_type", "epsilon")

    def v(y, tau):
        alpha, sigma = (float(z) for z in alpha_sigma(tau.item()))
        x = y * (alpha + sigma)
        return vp_flow_velocity(guided(x, tau.to(y.dtype)), x, prediction, alpha, sigma)

    return v, (t, taus), 1.0 / float(a[0] + s[0])


@torch.no_grad()
def measure(pipe, prompts: list[str], num: int = 64, steps: int = 25, guidance: float = 1.0, seed: int = 0) -> float:
    """S of ``pipe``'s sampler on ``num`` trajectories."""
    if num < 1 or steps < 1:
        raise StudioError(f"--num and --steps must be at least 1, got {num} and {steps}")
    device, dtype = pipe.unet.device, pipe.unet.dtype
    chunk = [prompts[k % len(prompts)] for k in range(num)]
    cond = encode_prompts(pipe.tokenizer, pipe.text_encoder, chunk, device).to(dtype)
    uncond = encode_prompts(pipe.tokenizer, pipe.text_encoder, [""] * num, device).to(dtype)
    flow = is_flow(pipe.scheduler.config)
    denoiser = Denoiser(pipe.unet, pipe.scheduler.config.get("prediction_type", "epsilon"))

    def guided(x, timestep):
        return denoiser.guided(x, timestep, cond, uncond, guidance if guidance > 1.0 else 1.0)

    if flow:
        field, grid, scale = (lambda x, ts: flow_velocity(guided(x, ts))), time_grid(steps), 1.0
    else:
        field, grid, scale = _teacher_field(pipe, guided, steps)
    shape = (pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
    z0 = image_noise(shape, range(seed, seed + num), device, dtype) * scale
    vs = []
    z1 = euler(field, z0, grid, callback=lambda i, v: vs.append(v))
    return straightness(z0, z1, grid[0], vs)


def run_straightness(cfg: StraightnessConfig) -> dict:
    validate(cfg)
    if cfg.out:
        check_writable(cfg.out)
    pipe = load_pipeline(cfg.model)
    s = measure(pipe, prompts_from(cfg.prompts, cfg.data_dir or None), cfg.num, cfg.steps, cfg.guidance, cfg.seed)
    kind = read_model_info(cfg.model)["kind"] if Path(cfg.model).is_dir() else "teacher"
    result = {"model": cfg.model, "kind": kind, "straightness": s, "num": cfg.num, "steps": cfg.steps,
              "guidance": cfg.guidance, "seed": cfg.seed}
    print(json.dumps(result))
    if cfg.out:
        write_json(cfg.out, result)
    return result
