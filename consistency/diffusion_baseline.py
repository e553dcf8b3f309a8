"""The pixel-space diffusion model that iCT is compared with in ``benchmarks/ict.py``.

DDPM (Ho et al. 2020): epsilon prediction with L_simple through the core's
``studio.diffusion_objective``, linear betas 1e-4 to 0.02 over 1,000 steps, on the same
``UNet2DModel`` as the consistency model; sampled with DPM-Solver++ (Lu et al. 2022, 2M) in 25+
steps with the model's x0 predictions clipped to [-1, 1] (``thresholding=True``,
``sample_max_value=1``; DDPM's own sampler clips x0 the same way, Ho et al. 2020's code); saved as a
plain diffusers ``DDPMPipeline`` whose scheduler is that solver. Without the clipping a short
CPU-trained pixel model's high-noise x0 predictions leave the data range and the samples
saturate (measured FID 284.5 at 25 steps on the benchmark model, colours blown out).
"""

from __future__ import annotations

import torch
from diffusers import DDPMPipeline, DDPMScheduler, DPMSolverMultistepScheduler

from studio.diffusion_objective import diffusion_loss
from studio.method import Method


def ddpm_schedule() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                         prediction_type="epsilon")


class PixelDiffusion(Method):
    name = "pixel-diffusion"

    def __init__(self, unet, data):
        self.unet, self.data = unet, data
        self.schedule = ddpm_schedule()

    def trainable(self):
        return {"unet": self.unet}

    def dataset(self):
        return self.data

    def loss(self, modules, batch, rand):
        unet = modules["unet"]
        return diffusion_loss(lambda x_t, t: unet(x_t, t).sample, batch["pixels"], self.schedule, rand), {}


def solver() -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (2M) on the DDPM schedule, x0 predictions clipped to [-1, 1]."""
    return DPMSolverMultistepScheduler.from_config(ddpm_schedule().config, thresholding=True, sample_max_value=1.0)


def export_pipeline(unet) -> DDPMPipeline:
    return DDPMPipeline(unet=unet, scheduler=solver())


@torch.no_grad()
def sample(unet, num: int, seed: int = 0, steps: int = 25) -> torch.Tensor:
    """``num`` images in [-1, 1]; image k starts from the noise of seed ``seed + k``."""
    sched = solver()
    sched.set_timesteps(steps)
    cfg = unet.config
    shape = (1, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    x = torch.cat([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed + k))
                   for k in range(num)]).to(unet.device, unet.dtype)
    for t in sched.timesteps:
        x = sched.step(unet(x, t).sample, t, x, return_dict=False)[0]
    return x.clamp(-1, 1)
