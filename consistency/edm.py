"""The EDM diffusion model on the studio's UNet2DModel (Karras et al. 2022; formulas in ``studio.diffusion.edm``):
its method for the shared loop, its sampler and its export. It is ECT's starting point
(``consistency.ect``) and a diffusion baseline beside the DDPM one (``consistency.diffusion_baseline``).

Export: a model folder (``consistency.model``) with ``unet/`` and, for c_noise = 0.25 ln(sigma), a
``scheduler/`` holding diffusers' ``EDMEulerScheduler`` with the same sigma_data, whose
``precondition_inputs`` / ``precondition_noise`` / ``precondition_outputs`` are exactly this
parameterisation. No diffusers pipeline class drives that scheduler for an unconditional UNet, so
there is no ``model_index.json``; in plain diffusers the loop is
``x = scheduler.step(unet(scheduler.scale_model_input(x, t), t).sample, t, x).prev_sample``
(EDM's Euler sampler; the studio's default is Heun, Algorithm 1). EDMEulerScheduler fixes
c_noise = 0.25 ln(sigma), so a model trained with another noise scale gets no scheduler (its
studio_model.json says so) and samples only through the studio.
"""

from __future__ import annotations

import torch
from diffusers import EDMEulerScheduler

from studio.data.augment import random_hflip
from studio.diffusion.edm import HEUN_STEPS, P_MEAN, P_STD, RHO, SIGMA_MAX, SIGMA_MIN, edm_loss, heun_sample
from studio.diffusion.edm import data_rms, lognormal_sigmas, sampling_sigmas
from studio.diffusion.noise import image_generators, image_noise
from studio.models.backbone import Components, save_pipeline
from studio.training.method import Method

from consistency.model import Precond, edm_denoiser

EDM_NOISE_SCALE = 0.25  # the only c_noise EDMEulerScheduler expresses (precondition_noise)
OUTPUTS = ("unet", "scheduler")  # what a model folder holds besides studio_model.json


def measured_sigma_data(data, chunk: int = 4096) -> float:
    """The data's RMS (``studio.diffusion.edm.data_rms``) over every image of ``data``."""
    return data_rms(data.pixels(slice(lo, lo + chunk)) for lo in range(0, len(data), chunk))


def edm_scheduler(precond: Precond) -> EDMEulerScheduler | None:
    """diffusers' EDMEulerScheduler for this parameterisation, or None where it cannot express it."""
    if precond.noise_scale != EDM_NOISE_SCALE:
        return None
    return EDMEulerScheduler(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, sigma_data=precond.sigma_data, rho=RHO,
                             prediction_type="epsilon", final_sigmas_type="zero")


def class_labels(batch: dict, conditional: bool, device) -> torch.Tensor | None:
    return batch["label"].to(device) if conditional else None


class EDMObjective(Method):
    name = "edm"

    def __init__(self, unet, data, precond: Precond, conditional: bool = False, flip: bool = False,
                 p_mean: float = P_MEAN, p_std: float = P_STD, dataset: str = ""):
        self.unet, self.data, self.precond, self.dataset_spec = unet, data, precond, dataset
        self.conditional, self.flip, self.p_mean, self.p_std = conditional, flip, p_mean, p_std

    def trainable(self):
        return {"unet": self.unet}

    def dataset(self):
        return self.data

    def loss(self, modules, batch, rand):
        """eq. 2 with Table 1's noise distribution and weighting (``studio.diffusion.edm.edm_loss``)."""
        x = batch["pixels"]
        if self.flip:
            x = random_hflip(x, rand.rand())
        sigma = lognormal_sigmas(rand.randn(), self.p_mean, self.p_std).to(x.device)
        noise = rand.randn(*x.shape[1:]).to(x.device, x.dtype)
        denoise, labels = edm_denoiser(modules["unet"], self.precond), class_labels(batch, self.conditional, x.device)
        return edm_loss(lambda xs, s: denoise(xs, s, labels), x, sigma, noise, self.precond.sigma_data), {}

    def export(self, result, out):
        unet = result.modules["unet"].eval().to("cpu")
        sched = edm_scheduler(self.precond)
        save_pipeline(Components(unet=unet, **({"scheduler": sched} if sched else {})), out)

    def model_info(self):
        classes = list(self.data.class_names) if self.conditional else []
        note = "" if edm_scheduler(self.precond) else \
            f"c_noise = {self.precond.noise_scale} ln(sigma): EDMEulerScheduler has only 0.25; studio sampling only"
        return dict(kind="edm", steps=HEUN_STEPS, guidance=0.0, class_names=classes, dataset=self.dataset_spec,
                    sigma_data=self.precond.sigma_data, noise_scale=self.precond.noise_scale,
                    **({"note": note} if note else {}))


@torch.no_grad()
def sample(unet, precond: Precond, num: int, seed: int = 0, steps: int = HEUN_STEPS, labels=None,
           heun: bool = True) -> torch.Tensor:
    """``num`` images in [-1, 1] by Algorithm 1 from sigma_max n (image k's noise from a generator seeded
    ``seed + k``); ``heun=False`` is EDM's Euler sampler, the one diffusers' EDMEulerScheduler runs."""
    cfg = unet.config
    gens = image_generators(range(seed, seed + num))
    x = image_noise((cfg.in_channels, cfg.sample_size, cfg.sample_size), gens, unet.device, unet.dtype) * SIGMA_MAX
    if labels is not None:
        labels = torch.as_tensor(labels, device=unet.device).reshape(-1).expand(num)
    denoise = edm_denoiser(unet, precond)
    out = heun_sample(lambda xs, s: denoise(xs, s, labels), x, sampling_sigmas(steps), heun=heun)
    return out.clamp(-1, 1)
