"""The iCT loss for the shared training loop (Song & Dhariwal 2023, sec. 3; recipe in ``consistency.recipe``).

At optimizer step k: N = N(k) Karras sigmas; i ~ the discretised lognormal over 1..N-1;
one z ~ N(0, I) per sample; student f(x + sigma_{i+1} z, sigma_{i+1}); target the same network
at (x + sigma_i z, sigma_i) under stop-gradient (no EMA teacher, iCT sec. 3.2); loss
lambda(sigma_i) pseudo-Huber(student, target). Both passes draw the same dropout masks: the
CPU (and CUDA) RNG state is saved before the student pass and restored before the target pass.
"""

from __future__ import annotations

import contextlib

import torch

from studio.data.augment import random_hflip
from studio.diffusion.adapter import append_dims
from studio.diffusion.losses import pseudo_huber
from studio.training.method import Method

from consistency.model import Precond, consistency_model
from consistency.sampling import save_model
from consistency.recipe import P_MEAN, P_STD, S0, S1, discretization_steps, karras_sigmas, loss_weights, lognormal_weights


@contextlib.contextmanager
def same_randomness(device: torch.device):
    """Capture the CPU (and CUDA) RNG state on entry and yield a function that restores it, so a
    second pass draws the same dropout masks as the first."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore():
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)

    yield restore


def consistency_info(classes: list[str], num_train_timesteps: int, dataset: str, precond: Precond) -> dict:
    """studio_model.json of a consistency model (iCT or ECT)."""
    return dict(kind="consistency", steps=1, guidance=0.0, class_names=classes, num_train_timesteps=num_train_timesteps,
                dataset=dataset, sigma_data=precond.sigma_data, noise_scale=precond.noise_scale)


class ICTObjective(Method):
    name = "ict"

    def __init__(self, unet, data, total_steps: int, conditional: bool = False, s0: int = S0, s1: int = S1,
                 p_mean: float = P_MEAN, p_std: float = P_STD, dataset: str = "", precond: Precond = Precond(),
                 flip: bool = False):
        self.unet, self.data, self.dataset_spec, self.precond, self.flip = unet, data, dataset, precond, flip
        self.total_steps, self.conditional = total_steps, conditional
        self.s0, self.s1, self.p_mean, self.p_std = s0, s1, p_mean, p_std
        self.on_step_start(0)

    def trainable(self):
        return {"unet": self.unet}

    def dataset(self):
        return self.data

    def final_scales(self) -> int:
        """N at the last step: the export scheduler's ``num_train_timesteps`` (its Karras grid)."""
        return discretization_steps(self.total_steps - 1, self.total_steps, self.s0, self.s1)

    def export(self, result, out):
        save_model(result.modules["unet"].eval().to("cpu"), out, self.final_scales(), self.precond)

    def model_info(self):
        classes = list(self.data.class_names) if self.conditional else []
        return consistency_info(classes, self.final_scales(), self.dataset_spec, self.precond)

    def on_step_start(self, step: int) -> None:
        """Curriculum: the sigmas, sampling weights and lambdas of N(step) (iCT sec. 3.4-3.5)."""
        self.num_scales = discretization_steps(step, self.total_steps, self.s0, self.s1)
        self.sigmas = karras_sigmas(self.num_scales)
        self.cdf = torch.cumsum(lognormal_weights(self.sigmas, self.p_mean, self.p_std), 0)
        self.lambdas = loss_weights(self.sigmas)

    def draw_indices(self, u: torch.Tensor) -> torch.Tensor:
        """i in 0..N-2 from uniforms by the inverse CDF of the lognormal weights."""
        return torch.searchsorted(self.cdf, u.double().cpu().clamp(max=float(self.cdf[-1]) - 1e-12)).clamp(
            max=self.num_scales - 2)

    def loss(self, modules, batch, rand):
        x = batch["pixels"]
        if self.flip:
            x = random_hflip(x, rand.rand())
        f = consistency_model(modules["unet"], self.precond)
        labels = batch["label"].to(x.device) if self.conditional else None
        i = self.draw_indices(rand.rand())
        z = rand.randn(*x.shape[1:]).to(x.dtype)
        s_i = self.sigmas[i].float().to(x.device)
        s_next = self.sigmas[i + 1].float().to(x.device)
        with same_randomness(x.device) as restore:
            student = f(x + append_dims(s_next, x.ndim) * z, s_next, labels)
            restore()
            with torch.no_grad():
                target = f(x + append_dims(s_i, x.ndim) * z, s_i, labels)
        lam = self.lambdas[i].float().to(x.device)
        d = pseudo_huber(student, target)  # c = 0.00054 sqrt(d), d = the image's dimension
        return torch.mean(lam * d), {"num_scales": float(self.num_scales)}
