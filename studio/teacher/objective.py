"""The teacher's stage 2 objective (stage 1, the autoencoder, is ``studio.teacher.vae_stage``).

Stage 2, the UNet (and, by default, the text encoder) on VAE latents with SD's epsilon-prediction
L_simple (``studio.diffusion.objective``). Captions are replaced by "" with probability
``caption_dropout`` (0.1) so the model also learns the unconditional score that classifier-free
guidance needs (Ho & Salimans 2022, sec. 3.2). Latents are posterior samples times the VAE's
``scaling_factor``, as in SD. Deviation: SD keeps a pretrained CLIP text encoder frozen; the
built-in presets have no pretrained CLIP, so the text encoder trains jointly unless
``train_text_encoder`` is off. The export is a plain ``StableDiffusionPipeline``.
"""

from __future__ import annotations

import torch

from studio.diffusion.adapter import Denoiser
from studio.diffusion.objective import diffusion_loss, noise_schedule
from studio.diffusion.prompting import PromptCache, tokenize
from studio.models.levers import MemoryLevers, apply_to_unet, export_pipeline, frozen_copy
from studio.training.method import Method


class UNetStage(Method):
    name = "unet"

    def __init__(self, pipe, data, caption_dropout: float = 0.1, train_text_encoder: bool = True,
                 info: dict | None = None, levers: MemoryLevers | None = None, seed: int = 0):
        self.pipe, self.data = pipe, data
        self.levers = levers or MemoryLevers()
        self.caption_dropout = caption_dropout
        self.train_text_encoder = train_text_encoder
        self.info = info
        self.schedule = noise_schedule(pipe.scheduler.config)
        self.prediction_type = pipe.scheduler.config.get("prediction_type", "epsilon")
        pipe.vae.requires_grad_(False)
        pipe.text_encoder.requires_grad_(train_text_encoder)
        apply_to_unet(pipe.unet, self.levers, seed)

    def trainable(self):
        mods = {"unet": self.pipe.unet}
        if self.train_text_encoder:
            mods["text_encoder"] = self.pipe.text_encoder
        return mods

    def dataset(self):
        return self.data

    def setup(self, device):
        self.vae = frozen_copy(self.pipe.vae, device, self.levers)
        if not self.train_text_encoder:
            self.cache = PromptCache(self.pipe.tokenizer, frozen_copy(self.pipe.text_encoder, device, self.levers))

    def loss(self, modules, batch, rand):
        x = batch["pixels"]
        vae = self.vae
        with torch.no_grad():
            dist = vae.encode(x.to(vae.dtype)).latent_dist
            eps = rand.randn(*dist.mean.shape[1:]).to(x.device)
            latents = (dist.mean.float() + dist.std.float() * eps) * vae.config.scaling_factor
        drop = (rand.rand() < self.caption_dropout).tolist()
        captions = ["" if d else c for d, c in zip(drop, batch["caption"])]
        if self.train_text_encoder:
            cond = modules["text_encoder"](tokenize(self.pipe.tokenizer, captions).input_ids.to(x.device))[0]
        else:
            cond = self.cache(captions, x.device)
        denoiser = Denoiser(modules["unet"], self.prediction_type)
        loss = diffusion_loss(lambda x_t, t: denoiser(x_t, t, cond), latents, self.schedule, rand,
                              self.prediction_type)
        return loss, {}

    def export(self, result, out):
        modules = result.modules
        if "text_encoder" in modules:
            self.pipe.text_encoder = modules["text_encoder"]
        export_pipeline(self.pipe, modules["unet"], out, self.levers)

    def model_info(self):
        return self.info
