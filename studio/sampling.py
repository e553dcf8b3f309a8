"""Text-to-image sampling for SD-style pipelines, with the studio's own loop.

It follows diffusers' ``StableDiffusionPipeline.__call__`` step for step (initial noise
times ``init_noise_sigma``, ``scale_model_input``, guidance over [uncond, cond], ``step``,
VAE decode), so a saved pipeline gives the same images in plain diffusers. Differences that
matter to a server: every call builds a fresh scheduler from the config (shared pipeline
state is never mutated, so concurrent requests are safe), and image k always uses the
generator seeded ``seed + k``, so it is identical at any batch size.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                       EulerDiscreteScheduler, HeunDiscreteScheduler, PNDMScheduler, UniPCMultistepScheduler)
from tqdm.auto import tqdm

from studio import StudioError
from studio.adapter import Denoiser
from studio.prompting import encode_prompts

SOLVERS = {
    "dpmsolver": DPMSolverMultistepScheduler, "ddim": DDIMScheduler, "euler": EulerDiscreteScheduler,
    "euler-ancestral": EulerAncestralDiscreteScheduler, "heun": HeunDiscreteScheduler, "pndm": PNDMScheduler,
    "unipc": UniPCMultistepScheduler,
}


def make_scheduler(pipe, solver: str = ""):
    """A fresh scheduler: the pipeline's own class, or the named solver with the pipeline's schedule."""
    if not solver:
        return pipe.scheduler.__class__.from_config(pipe.scheduler.config)
    if solver not in SOLVERS:
        raise StudioError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    return SOLVERS[solver].from_config(pipe.scheduler.config)


def initial_noise(shape_per_image, seeds: list[int], device, dtype) -> torch.Tensor:
    """One generator per image, drawn on the CPU as diffusers' ``randn_tensor`` does for a list."""
    return torch.cat([torch.randn((1, *shape_per_image), generator=torch.Generator("cpu").manual_seed(s),
                                  dtype=dtype) for s in seeds]).to(device)


@torch.no_grad()
def generate(pipe, prompts: list[str], steps: int = 25, guidance: float = 5.0, seed: int = 0,
             solver: str = "", batch_size: int = 16, progress: bool = False,
             callback: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Images for ``prompts`` as float32 (N, H, W, 3) in [0, 1]; image k uses seed ``seed + k``."""
    if steps < 1:
        raise StudioError(f"steps must be at least 1, got {steps}")
    if not prompts:
        raise StudioError("no prompts to sample")
    device, dtype = pipe.unet.device, pipe.unet.dtype
    cfg = guidance > 1.0  # diffusers applies guidance only for guidance_scale > 1
    denoiser = Denoiser(pipe.unet, pipe.scheduler.config.get("prediction_type", "epsilon"))
    latent_shape = (pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
    out = []
    total = len(prompts) * steps
    bar = tqdm(total=total, disable=not progress, desc="sampling")
    for lo in range(0, len(prompts), batch_size):
        chunk = prompts[lo:lo + batch_size]
        cond = encode_prompts(pipe.tokenizer, pipe.text_encoder, chunk, device).to(dtype)
        uncond = encode_prompts(pipe.tokenizer, pipe.text_encoder, [""] * len(chunk), device).to(dtype) if cfg else None
        scheduler = make_scheduler(pipe, solver)
        scheduler.set_timesteps(steps, device=device)
        seeds = list(range(seed + lo, seed + lo + len(chunk)))
        latents = initial_noise(latent_shape, seeds, device, dtype) * scheduler.init_noise_sigma
        for i, t in enumerate(scheduler.timesteps):
            x_in = scheduler.scale_model_input(latents, t)
            pred = denoiser.guided(x_in, t, cond, uncond, guidance if cfg else 1.0)
            latents = scheduler.step(pred, t, latents, return_dict=False)[0]
            bar.update(len(chunk))
            if callback is not None:
                callback(lo * steps + (i + 1) * len(chunk), total)
        images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
        out.append((images.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy())
    bar.close()
    return np.concatenate(out)
