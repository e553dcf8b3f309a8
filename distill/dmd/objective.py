"""DMD2 (Yin et al. 2024) on the shared loop: a one-step generator, the frozen teacher as the real score, a
trained fake score, and optionally the GAN term. Math in ``distill.dmd.scores``; constants of the released
SD 1.5 configuration (tianweiy/DMD2 ``experiments/sdv1.5``, ``main/sd_guidance.py``) in ``distill.dmd.config``.

Time conventions: the real and fake scores are epsilon UNets on the teacher's DDPM timesteps
(``studio.diffusion.objective``). The generator maps noise z ~ N(0, I) to a latent in one step, in its
initialisation's own parameterisation:
- an epsilon pipeline (the teacher): x = (z - sqrt(1 - abar_999) eps(z, 999)) / sqrt(abar_999), as DMD2 (z is
  fed at timestep 999, "conditioning_timestep"); exported with a 1-step DDIM scheduler ("trailing" spacing,
  final alpha 1, no clipping), which computes exactly this;
- a flow pipeline (the 2-RF or the InstaFlow student): x = z + (t_1 - t_0) v(z, t_0) on the flow export grid
  (``studio.diffusion.flow``), exported with the flow scheduler, as the InstaFlow student.

Two optimizer groups (``studio.training.method``): ``generator`` and ``guidance`` (the fake score and the GAN
head). At loop step s, the generator updates first when s is a multiple of ``update_ratio`` (DMD2's
``dfake_gen_update_ratio``, 10 for SD 1.5), then the guidance group, every step: so ``steps`` loop steps make
ceil(steps / update_ratio) generator updates. Generator update (DMD2 sec. 4.1, 4.3): t ~ U{20, ..., 980},
the DMD gradient between the guided real score and the fake score, plus ``gan_gen_weight`` times the
generator's GAN term; the fake score and head are used with detached weights. Guidance update: the fake
score's epsilon loss on fresh generator samples (t ~ U{0, ..., 999}; DMD2 sec. 4.2), plus ``gan_cls_weight``
times the classifier loss on noisy generated and real latents (VAE posterior samples of the batch's images,
with their captions). Deviation: DMD2 trains the fake score on the images of the generator update just before
it; here every guidance update draws its own noise and samples the current generator (no grad), so a step
whose generator does not update costs one extra generator pass and no stored images.
"""

from __future__ import annotations

import copy

import torch
from diffusers import DDIMScheduler

from studio import StudioError
from studio.diffusion.adapter import Denoiser, flow_velocity
from studio.diffusion.flow import flow_scheduler, is_flow, time_grid
from studio.diffusion.objective import diffusion_loss, noise_schedule
from studio.diffusion.prompting import PromptCache
from studio.models.levers import MemoryLevers, apply_to_unet, export_pipeline, frozen_copy
from studio.training.method import Group, Method, frozen_call

from distill.dmd.scores import (FakeScore, classifier_gan_loss, denoised, dmd_gradient, dmd_loss,
                                generator_gan_loss)

CONDITIONING_TIMESTEP = 999  # DMD2's "conditioning_timestep": the epsilon generator reads z as x_999


def one_step_ddim(scheduler_config) -> DDIMScheduler:
    """DDIM whose single step (``set_timesteps(1)``: timestep 999) returns the x0 estimate itself."""
    return DDIMScheduler.from_config(scheduler_config, timestep_spacing="trailing", set_alpha_to_one=True,
                                     clip_sample=False, thresholding=False, prediction_type="epsilon")


class DMDObjective(Method):
    name = "dmd2"

    def __init__(self, pipe, teacher, data, real_guidance: float = 1.75, update_ratio: int = 10,
                 t_range: tuple[int, int] = (20, 980), gan: bool = False, gan_gen_weight: float = 1e-3,
                 gan_cls_weight: float = 1e-2, info: dict | None = None, levers: MemoryLevers | None = None,
                 seed: int = 0):
        kinds = (pipe.scheduler.config.get("prediction_type", "epsilon"),
                 teacher.scheduler.config.get("prediction_type", "epsilon"))
        if kinds[1] != "epsilon" or is_flow(teacher.scheduler.config):
            raise StudioError(f"the teacher (real score) must be an epsilon-prediction pipeline, not {kinds[1]}")
        if not is_flow(pipe.scheduler.config) and kinds[0] != "epsilon":
            raise StudioError(f"--init must be an epsilon or a flow pipeline, not {kinds[0]}")
        self.pipe, self.teacher, self.data, self.info = pipe, teacher, data, info
        self.flow = is_flow(pipe.scheduler.config)
        self.real_guidance, self.update_ratio, self.t_range = real_guidance, update_ratio, t_range
        self.gan, self.gan_gen_weight, self.gan_cls_weight = gan, gan_gen_weight, gan_cls_weight
        self.levers = levers or MemoryLevers()
        self.schedule = noise_schedule(teacher.scheduler.config)
        self.gen_alphas = noise_schedule(pipe.scheduler.config).alphas_cumprod if not self.flow else None
        t, timesteps = time_grid(1)
        self.dt, self.flow_timestep = float(t[1] - t[0]), int(timesteps[0])
        self.fake = FakeScore(copy.deepcopy(teacher.unet).requires_grad_(True), gan, seed)
        self.shared_text = _same_weights(pipe.text_encoder, teacher.text_encoder)  # one prompt cache serves both
        for frozen in (pipe.vae, pipe.text_encoder, teacher.vae, teacher.text_encoder, teacher.unet):
            frozen.requires_grad_(False)
        apply_to_unet(pipe.unet, self.levers, seed)
        if self.levers.gradient_checkpointing:
            self.fake.unet.enable_gradient_checkpointing()

    def trainable(self):
        return {"generator": self.pipe.unet, "fake": self.fake}

    def groups(self):
        return {"generator": Group(("generator",)), "guidance": Group(("fake",), ema=False)}

    def updates(self, step):
        return ["generator", "guidance"] if step % self.update_ratio == 0 else ["guidance"]

    def dataset(self):
        return self.data

    def setup(self, device):
        self.real = Denoiser(frozen_copy(self.teacher.unet, device, self.levers), "epsilon")
        self.teacher_text = PromptCache(self.teacher.tokenizer, frozen_copy(self.teacher.text_encoder, device, self.levers))
        self.gen_text = self.teacher_text if self.shared_text else PromptCache(
            self.pipe.tokenizer, frozen_copy(self.pipe.text_encoder, device, self.levers))
        if self.gan:
            self.vae = frozen_copy(self.teacher.vae, device, self.levers)

    # -- the generator: one step from noise ------------------------------------------------------------
    def generate(self, unet, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if self.flow:
            return z + self.dt * flow_velocity(Denoiser(unet, "flow_prediction")(z, self.flow_timestep, cond))
        t = torch.full((z.shape[0],), CONDITIONING_TIMESTEP, device=z.device, dtype=torch.long)
        return denoised(z, Denoiser(unet, "epsilon")(z, t, cond), self.gen_alphas, t)

    def _noise(self, rand, shape, device) -> torch.Tensor:
        return rand.randn(*shape).to(device)

    def group_loss(self, group, modules, batch, rand):
        captions = list(batch["caption"])
        device = batch["pixels"].device
        c = self.pipe.unet.config
        shape = (c.in_channels, c.sample_size, c.sample_size)
        cond_g, cond_t = self.gen_text(captions, device), self.teacher_text(captions, device)
        z = self._noise(rand, shape, device)
        if group == "generator":
            return self._generator_loss(modules, z, cond_g, cond_t, rand)
        return self._guidance_loss(modules, z, cond_g, cond_t, batch, rand)

    def _generator_loss(self, modules, z, cond_g, cond_t, rand):
        x = self.generate(modules["generator"], z, cond_g)
        fake = getattr(modules["fake"], "module", modules["fake"])
        # both scores outside autocast (DMD2 runs the fake score in fp32): the x0 estimates divide by
        # sqrt(abar_t), down to 0.13 at t = 980, which magnifies rounding; the real score runs in --frozen-dtype
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            t = rand.randint(self.t_range[0], self.t_range[1] + 1).to(x.device)
            x_t = self.schedule.add_noise(x.float(), self._noise(rand, x.shape[1:], x.device), t)
            uncond = self.teacher_text([""], x.device).expand_as(cond_t)
            dtype = self.real.unet.dtype
            eps_real = self.real.guided(x_t.to(dtype), t, cond_t.to(dtype), uncond.to(dtype),
                                        self.real_guidance).float()
            eps_fake, _ = fake(x_t, t, cond_t)
            alphas = self.schedule.alphas_cumprod
            grad = dmd_gradient(x.detach(), denoised(x_t, eps_real, alphas, t), denoised(x_t, eps_fake, alphas, t))
        loss = dmd_loss(x, grad)
        logs = {"loss_dm": float(loss.detach()), "grad_norm_dm": float(grad.norm())}
        if self.gan:
            tc = rand.randint(0, self.schedule.config.num_train_timesteps).to(x.device)
            x_c = self.schedule.add_noise(x, self._noise(rand, x.shape[1:], x.device), tc)
            _, logits = frozen_call(modules["fake"], cls_x=x_c, cls_t=tc, cls_cond=cond_t)
            gan = generator_gan_loss(logits)
            loss = loss + self.gan_gen_weight * gan
            logs["gan_gen"] = float(gan.detach())
        return loss, logs

    def _guidance_loss(self, modules, z, cond_g, cond_t, batch, rand):
        with torch.no_grad():
            x = self.generate(modules["generator"], z, cond_g)
        cls = {}
        if self.gan:
            with torch.no_grad():
                dist = self.vae.encode(batch["pixels"].to(self.vae.dtype)).latent_dist
                real = (dist.mean + dist.std * self._noise(rand, dist.mean.shape[1:], x.device).to(dist.std.dtype))
                real = real.float() * self.vae.config.scaling_factor
            both = torch.cat([x, real])
            tc = torch.cat([rand.randint(0, self.schedule.config.num_train_timesteps) for _ in range(2)]).to(x.device)
            noise = torch.cat([self._noise(rand, x.shape[1:], x.device) for _ in range(2)])
            cls = dict(cls_x=self.schedule.add_noise(both, noise, tc), cls_t=tc, cls_cond=torch.cat([cond_t, cond_t]))
        out = {}

        def predict(x_t, t):
            eps, out["logits"] = modules["fake"](x_t, t, cond_t, **cls)
            return eps

        loss = diffusion_loss(predict, x, self.schedule, rand)
        logs = {"loss_fake": float(loss.detach())}
        if self.gan:
            logits_fake, logits_real = out["logits"].chunk(2)
            gan = classifier_gan_loss(logits_fake, logits_real)
            loss = loss + self.gan_cls_weight * gan
            logs.update(gan_cls=float(gan.detach()), p_real=float(torch.sigmoid(logits_real.detach()).mean()),
                        p_fake=float(torch.sigmoid(logits_fake.detach()).mean()))
        return loss, logs

    # -- the artefact ----------------------------------------------------------------------------------------
    def export(self, result, out):
        # the scheduler whose single step is the trained map: 1-step DDIM, or the flow export grid
        self.pipe.scheduler = flow_scheduler() if self.flow else one_step_ddim(self.pipe.scheduler.config)
        export_pipeline(self.pipe, result.modules["generator"], out, self.levers)

    def model_info(self):
        return self.info


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
