"""Stage 2: the text-conditional UNet (and, by default, the text encoder) on VAE latents.

Objective: ``studio.diffusion.objective`` (SD's epsilon-prediction L_simple, scaled-linear
DDPM schedule). Captions are replaced by "" with probability ``caption_dropout`` (0.1) so
the model also learns the unconditional score that classifier-free guidance needs
(Ho & Salimans 2022, sec. 3.2). Latents are posterior samples times the VAE's
``scaling_factor``, as in SD.

Deviation: SD keeps a pretrained CLIP text encoder frozen. The built-in presets have no
pretrained CLIP, so the text encoder trains jointly unless ``train_text_encoder`` is off.
"""

from __future__ import annotations

import torch

from studio.diffusion.adapter import Denoiser
from studio.diffusion.objective import diffusion_loss, noise_schedule
from studio.training.method import Method
from studio.diffusion.prompting import tokenize


class UNetStage(Method):
    name = "unet"

    def __init__(self, pipe, data, caption_dropout: float = 0.1, train_text_encoder: bool = True):
        self.pipe, self.data = pipe, data
        self.caption_dropout = caption_dropout
        self.train_text_encoder = train_text_encoder
        self.schedule = noise_schedule(pipe.scheduler.config)
        self.prediction_type = pipe.scheduler.config.get("prediction_type", "epsilon")
        pipe.vae.requires_grad_(False)
        pipe.text_encoder.requires_grad_(train_text_encoder)

    def trainable(self):
        mods = {"unet": self.pipe.unet}
        if self.train_text_encoder:
            mods["text_encoder"] = self.pipe.text_encoder
        return mods

    def dataset(self):
        return self.data

    def setup(self, device):
        self.pipe.vae.to(device).eval()
        if not self.train_text_encoder:
            self.pipe.text_encoder.to(device).eval()

    def loss(self, modules, batch, rand):
        x = batch["pixels"]
        vae = self.pipe.vae
        with torch.no_grad():
            dist = vae.encode(x).latent_dist
            z = dist.mean + dist.std * rand.randn(*dist.mean.shape[1:]).to(x.dtype)
            latents = z * vae.config.scaling_factor
        drop = (rand.rand() < self.caption_dropout).tolist()
        captions = ["" if d else c for d, c in zip(drop, batch["caption"])]
        ids = tokenize(self.pipe.tokenizer, captions).input_ids.to(x.device)
        text_encoder = modules.get("text_encoder", self.pipe.text_encoder)
        with torch.set_grad_enabled(self.train_text_encoder):
            cond = text_encoder(ids)[0]
        denoiser = Denoiser(modules["unet"], self.prediction_type)
        loss = diffusion_loss(lambda x_t, t: denoiser(x_t, t, cond), latents, self.schedule, rand,
                              self.prediction_type)
        return loss, {}
