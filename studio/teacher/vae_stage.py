"""The teacher's stage 1: the ``AutoencoderKL`` of latent diffusion, with SD's "KL-f8" loss (Rombach et al.
2022, appendix G; the loss of its ``LPIPSWithDiscriminator``) less the perceptual term:

    L_vae = |x - D(z)|_1 + beta KL(q(z|x) || N(0, I)) + lambda * d * L_G,   z ~ q(z|x),   beta = 1e-6

- both the L1 and KL terms are divided by the pixel count, which keeps SD's ratio beta between them;
- L_G = -E Disc(D(z)) is the patch discriminator's generator term with the adaptive weight lambda and
  ``disc_weight`` d (``studio.teacher.adversarial``); it and the discriminator's own hinge loss are on from
  step ``disc_start`` (SD: 50,001 of its run); ``disc_weight`` 0 trains the L1 + KL autoencoder alone;
- the discriminator is a second optimizer group on the shared loop (``studio.training.method``), stepped
  after the autoencoder at each step from ``disc_start`` on, on reconstructions of its own batch.

Deviation: the discriminator always sees a real and a reconstructed batch in one pass (its BatchNorm
statistics are over both), where taming calls it on each batch alone. With separate calls each batch is
normalised by its own statistics, so the mean logit of a batch hardly depends on whether it is real; on
the tiny teacher the hinge loss then sat at exactly 1 from 300 steps after the switch-on, the adaptive
weight rose to 230, and the reconstruction FID went from 4.4 (L1 alone) to 8.0
(``benchmarks/teacher_quality.py``'s ``gan-3000`` row at commit d51bdd8, before this change); with one pass
(and the clamp on LDM's scale) it scores 4.5, its discriminator still near chance at 32x32.

The export sets the latent ``scaling_factor`` to 1 / std of posterior samples, as SD's 0.18215 was chosen.
Deviations: no LPIPS term (its VGG weights cannot be obtained offline); no learned log-variance on the
reconstruction term (SD's starts at 0, a scalar rescaling that the adaptive weight follows).
"""

from __future__ import annotations

import torch

from studio.files import atomic_path
from studio.teacher.adversarial import PatchDiscriminator, adaptive_weight, hinge_d_loss
from studio.training.method import Group, Method, frozen_call


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

    def __init__(self, vae, data, kl_weight: float = 1e-6, disc_weight: float = 0.0, disc_start: int = 0,
                 disc_channels: int = 64, disc_layers: int = 3, seed: int = 0):
        self.objective, self.data, self.kl_weight = VAEObjective(vae), data, kl_weight
        self.disc_weight, self.disc_start, self.step = disc_weight, disc_start, 0
        self.disc = None
        if disc_weight > 0:
            with torch.random.fork_rng(devices=[]):  # its initial weights are a function of the seed
                torch.manual_seed(seed)
                self.disc = PatchDiscriminator(vae.config.out_channels, disc_channels, disc_layers)

    def trainable(self):
        return {"vae": self.objective, **({"disc": self.disc} if self.disc is not None else {})}

    def groups(self):
        disc = {"disc": Group(("disc",), ema=False)} if self.disc is not None else {}
        return {"vae": Group(("vae",)), **disc}

    def updates(self, step):
        return ["vae", "disc"] if self.adversarial(step) else ["vae"]

    def adversarial(self, step: int) -> bool:
        """Whether the adversarial term (and the discriminator's training) is on at optimizer step ``step``."""
        return self.disc is not None and step >= self.disc_start

    def dataset(self):
        return self.data

    def on_step_start(self, step):
        self.step = step

    def reconstruct(self, vae, x, rand):
        f = self.objective.vae.config
        down = 2 ** (len(f.block_out_channels) - 1)
        noise = rand.randn(f.latent_channels, x.shape[-2] // down, x.shape[-1] // down).to(x.dtype)
        return vae(x, noise)

    def group_loss(self, group, modules, batch, rand):
        x = batch["pixels"]
        if group == "disc":
            with torch.no_grad():
                recon, _ = self.reconstruct(modules["vae"], x, rand)
            logits_real, logits_fake = modules["disc"](torch.cat([x, recon])).chunk(2)
            d_loss = hinge_d_loss(logits_real, logits_fake)
            return d_loss, {"d_loss": float(d_loss.detach())}
        recon, kl = self.reconstruct(modules["vae"], x, rand)
        rec = (recon.float() - x.float()).abs().mean()
        kl = kl.float().mean() / x[0].numel()
        loss = rec + self.kl_weight * kl
        logs = {"rec_l1": float(rec.detach()), "kl": float(kl.detach())}
        if self.adversarial(self.step):
            g_loss = -frozen_call(modules["disc"], torch.cat([recon, x])).chunk(2)[0].float().mean()
            weight = adaptive_weight(rec, g_loss, self.objective.vae.decoder.conv_out.weight, self.disc_weight,
                                     max_weight=1e4 / x[0].numel())  # rec is a per-pixel mean, LDM's a sum
            loss = loss + weight * g_loss
            logs.update(g_loss=float(g_loss.detach()), d_weight=float(weight))
        return loss, logs

    def export(self, result, out):
        vae = result.modules["vae"].vae.eval()
        pixels = self.data.pixels(slice(0, 512)).to(vae.device)
        vae.register_to_config(scaling_factor=latent_scaling_factor(vae, pixels))
        with atomic_path(out) as tmp:  # its config.json marks the stage finished: never half written
            vae.save_pretrained(str(tmp), safe_serialization=True)


@torch.no_grad()
def latent_scaling_factor(vae, pixels: torch.Tensor) -> float:
    """1 / std of posterior samples, as SD's 0.18215 was chosen (Rombach et al. 2022, appendix G)."""
    gen = torch.Generator(pixels.device).manual_seed(0)
    dist = vae.encode(pixels).latent_dist
    z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen, device=pixels.device)
    return float(1.0 / z.float().std())
