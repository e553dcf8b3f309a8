"""Stage 1: the autoencoder (``AutoencoderKL``) of latent diffusion.

Loss: L1 reconstruction + beta * KL(q(z|x) || N(0, I)) with beta = 1e-6 relative to the
per-pixel sums, as in SD's "KL-f8" autoencoder (Rombach et al. 2022, appendix G). Here both
terms are divided by the pixel count, which keeps SD's ratio. Deviation: SD adds an LPIPS
perceptual term and a patch-GAN; LPIPS weights cannot be obtained offline and the GAN costs
more than a CPU budget allows, so the built-in teacher trains without them.
"""

from __future__ import annotations

import torch

from studio.training.method import Method


class VAEObjective(torch.nn.Module):
    """encode -> reparameterised sample -> decode in one ``forward``, so DDP sees every use."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x, noise):
        dist = self.vae.encode(x).latent_dist
        recon = self.vae.decode(dist.mean + dist.std * noise).sample
        return recon, dist.kl()


class VAEStage(Method):
    name = "vae"

    def __init__(self, vae, data, kl_weight: float = 1e-6):
        self.objective, self.data, self.kl_weight = VAEObjective(vae), data, kl_weight

    def trainable(self):
        return {"vae": self.objective}

    def dataset(self):
        return self.data

    def loss(self, modules, batch, rand):
        x = batch["pixels"]
        f = self.objective.vae.config
        down = 2 ** (len(f.block_out_channels) - 1)
        noise = rand.randn(f.latent_channels, x.shape[-2] // down, x.shape[-1] // down).to(x.dtype)
        recon, kl = modules["vae"](x, noise)
        rec = (recon.float() - x.float()).abs().mean()
        kl = kl.float().mean() / x[0].numel()
        return rec + self.kl_weight * kl, {"rec_l1": float(rec.detach()), "kl": float(kl.detach())}


@torch.no_grad()
def latent_scaling_factor(vae, pixels: torch.Tensor) -> float:
    """1 / std of posterior samples, as SD's 0.18215 was chosen (Rombach et al. 2022, appendix G)."""
    gen = torch.Generator(pixels.device).manual_seed(0)
    dist = vae.encode(pixels).latent_dist
    z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen, device=pixels.device)
    return float(1.0 / z.float().std())
