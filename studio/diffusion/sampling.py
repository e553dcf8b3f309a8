"""Text-to-image sampling for SD-style pipelines, with the studio's own loop.

It follows diffusers' ``StableDiffusionPipeline.__call__`` step for step (initial noise
times ``init_noise_sigma``, ``scale_model_input``, guidance over [uncond, cond], ``step``,
VAE decode), so a saved pipeline gives the same images in plain diffusers. Flow pipelines
(2-rectified flows and one-step students, see ``studio.diffusion.flow``) use the studio's Euler sampler,
which their saved scheduler reproduces in plain diffusers. Differences that
matter to a server: every call builds a fresh scheduler from the config (shared pipeline
state is never mutated, so concurrent requests are safe), and image k always uses the
generator seeded ``seed + k``, so it is identical at any batch size.
"""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np
import torch
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, HeunDiscreteScheduler, PNDMScheduler, UniPCMultistepScheduler)
from tqdm.auto import tqdm

from studio import StudioError
from studio.diffusion.adapter import Denoiser, flow_velocity
from studio.diffusion.flow import euler, is_flow, time_grid
from studio.diffusion.noise import image_noise
from studio.diffusion.prompting import encode_prompts
from studio.images import to_unit_hwc

SOLVERS = {
    "dpmsolver": DPMSolverMultistepScheduler, "ddim": DDIMScheduler, "euler": EulerDiscreteScheduler,
    "euler-ancestral": EulerAncestralDiscreteScheduler, "heun": HeunDiscreteScheduler, "pndm": PNDMScheduler,
    "unipc": UniPCMultistepScheduler,
}
Solver = Literal[("auto", *SOLVERS)]  # a command's --solver; auto: the pipeline's own scheduler


def make_scheduler(pipe, solver: str = "auto"):
    """A fresh scheduler: the pipeline's own class (``auto``), or the named solver with the pipeline's schedule."""
    if solver == "auto":
        return pipe.scheduler.__class__.from_config(pipe.scheduler.config)
    if solver not in SOLVERS:
        raise StudioError(f"unknown solver {solver!r}; choose one of auto, {', '.join(SOLVERS)}")
    return SOLVERS[solver].from_config(pipe.scheduler.config)


def is_stochastic(scheduler) -> bool:
    """Whether a scheduler injects fresh noise at its steps (ancestral and SDE samplers, DDPM), so that
    the same start noise does not give the same image: such a sampler defines no deterministic coupling."""
    name = type(scheduler).__name__
    algorithm = str(scheduler.config.get("algorithm_type", ""))
    return "Ancestral" in name or "SDE" in name or name in ("DDPMScheduler", "LCMScheduler", "TCDScheduler") \
        or algorithm.startswith("sde") or float(scheduler.config.get("eta", 0.0) or 0.0) > 0


def _check(steps: int, prompts) -> None:
    if steps < 1:
        raise StudioError(f"steps must be at least 1, got {steps}")
    if not prompts:
        raise StudioError("no prompts to sample")


@torch.no_grad()
def sample_latents(pipe, prompts: list[str], steps: int, guidance: float, seeds: list[int], solver: str = "auto",
                   on_step: Callable[[], None] | None = None) -> torch.Tensor:
    """Final latents for one batch; image k starts from the noise of ``seeds[k]``.

    A flow pipeline (``studio.diffusion.flow``) is integrated with the studio's Euler sampler; any other
    pipeline with its own (or the named) diffusers scheduler.
    """
    _check(steps, prompts)
    device, dtype = pipe.unet.device, pipe.unet.dtype
    cfg = guidance > 1.0  # diffusers applies guidance only for guidance_scale > 1
    denoiser = Denoiser(pipe.unet, pipe.scheduler.config.get("prediction_type", "epsilon"))
    latent_shape = (pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
    cond = encode_prompts(pipe.tokenizer, pipe.text_encoder, prompts, device).to(dtype)
    uncond = encode_prompts(pipe.tokenizer, pipe.text_encoder, [""] * len(prompts), device).to(dtype) if cfg else None
    scale = guidance if cfg else 1.0
    if is_flow(pipe.scheduler.config):
        if solver not in ("auto", "euler"):
            raise StudioError(f"{solver!r} does not apply to a flow pipeline; it samples with Euler (--solver euler)")

        return euler(lambda x, timestep: flow_velocity(denoiser.guided(x, timestep, cond, uncond, scale)),
                     image_noise(latent_shape, seeds, device, dtype), time_grid(steps),
                     callback=None if on_step is None else (lambda i, v: on_step()))
    scheduler = make_scheduler(pipe, solver)
    scheduler.set_timesteps(steps, device=device)
    latents = image_noise(latent_shape, seeds, device, dtype) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(latents, t)
        pred = denoiser.guided(x_in, t, cond, uncond, scale)
        latents = scheduler.step(pred, t, latents, return_dict=False)[0]
        if on_step is not None:
            on_step()
    return latents


@torch.no_grad()
def decode(pipe, latents: torch.Tensor) -> np.ndarray:
    """VAE-decode latents to float32 (N, H, W, 3) images in [0, 1], as diffusers does."""
    return to_unit_hwc(pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0])


def generate(pipe, prompts: list[str], steps: int = 25, guidance: float = 5.0, seed: int = 0,
             solver: str = "auto", batch_size: int = 16, progress: bool = False,
             callback: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Images for ``prompts`` as float32 (N, H, W, 3) in [0, 1]; image k uses seed ``seed + k``."""
    _check(steps, prompts)
    out, done = [], 0
    total = len(prompts) * steps
    bar = tqdm(total=total, disable=not progress, desc="sampling")
    for lo in range(0, len(prompts), batch_size):
        chunk = prompts[lo:lo + batch_size]

        def on_step(n=len(chunk)):
            nonlocal done
            done += n
            bar.update(n)
            if callback is not None:
                callback(done, total)

        seeds = list(range(seed + lo, seed + lo + len(chunk)))
        out.append(decode(pipe, sample_latents(pipe, chunk, steps, guidance, seeds, solver, on_step)))
    bar.close()
    return np.concatenate(out)
