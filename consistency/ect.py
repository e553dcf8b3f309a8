"""Easy Consistency Tuning (ECT; Geng et al. 2024, "Consistency Models Made Easy", ICLR 2025): a
consistency model tuned from a pretrained EDM diffusion model (``consistency.edm``), for the shared loop.

Conventions: EDM noise levels (x_t = y + t n). The consistency function is the EDM network in the
consistency parameterisation (``consistency.model.consistency_model``), so at initialisation it is
the diffusion model's denoiser D up to the boundary shift: f = D exactly in the scalings' limit
sigma_min -> 0 (``tests/test_ect.py`` bounds the difference).

At each step, per sample (the paper's method section; constants of locuslab/ect ``training/loss.py``
``ECMLoss`` and ``run_ecm.sh`` for CIFAR-10):
- t from the lognormal, ln t ~ N(P_mean, P_std^2) with P_mean -1.1, P_std 2.0;
- r = max(t (1 - n(t) / q^(a+1)), 0) with n(t) = 1 + k sigmoid(-b t), k 8, b 1, q 2, and stage
  a = floor(step / d) (``t_to_r_sigmoid``): dt = t - r halves at every stage, the "continuous-time
  discretisation" that shrinks towards the consistency condition; CIFAR-10 doubles every 25k of 200k
  iterations (8 stages), and the default here keeps 8 stages over ``--steps``;
- one n for both points: student f(y + t n, t), target sg(f(y + r n, r)) from the same online network
  with the same dropout masks (no EMA teacher), and y itself where r = 0;
- loss w(t, r) d(student, target) with w = 1 / (t - r) and d the per-sample L2 norm (c = 0, the CIFAR-10
  setting) or pseudo-Huber sqrt(||.||^2 + c^2) - c.
Optimizer RAdam, lr 1e-4 (``run_ecm.sh``).

Deviations, and why: the boundary scalings with sigma_min 0.002 (iCT, CM and diffusers'
CMStochasticIterativeScheduler) are used in training and sampling alike, where ECT trains with the
plain EDM scalings and shifts to sigma_min 0.003 only for sampling (``ECMPrecond``): what is trained is
then what is exported; t is clamped to >= sigma_min, where f(x, t) = x carries no gradient (0.5 % of the
lognormal), and a target level r <= sigma_min uses y + r n = f(y + r n, sigma_min). EMA 0.999 with the
loop's warm-up instead of 0.9999: the CPU runs are hundreds of steps, not 200k.
"""

from __future__ import annotations

import torch

from studio.data.augment import random_hflip
from studio.diffusion.adapter import append_dims
from studio.diffusion.losses import pseudo_huber
from studio.diffusion.edm import lognormal_sigmas
from studio.training.method import Method

from consistency.model import Precond, consistency_model
from consistency.objective import consistency_info, same_randomness
from consistency.recipe import SIGMA_MIN
from consistency.sampling import save_model

P_MEAN, P_STD = -1.1, 2.0
Q, K, B = 2.0, 8.0, 1.0
STAGES = 8  # CIFAR-10: 200k iterations, dt halved every 25k
EXPORT_GRID = 1281  # the diffusers scheduler's Karras grid (iCT's final N): ECT itself is continuous in t


def n_of_t(t: torch.Tensor, k: float = K, b: float = B) -> torch.Tensor:
    """n(t) = 1 + k sigmoid(-b t) (ECT's sigmoid mapping)."""
    return 1.0 + k * torch.sigmoid(-b * t)


def r_of_t(t: torch.Tensor, stage: int, q: float = Q, k: float = K, b: float = B) -> torch.Tensor:
    """r = max(t (1 - n(t) / q^(stage + 1)), 0): in [0, t), and t - r = t n(t) / q^(stage + 1) until clamped."""
    return torch.clamp(t * (1.0 - n_of_t(t, k, b) / q ** (stage + 1)), min=0.0)


def ect_weight(t: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """w(t, r) = 1 / (t - r) (ECT's weighting; the CIFAR-10 code's default)."""
    return 1.0 / (t - r)


class ECTObjective(Method):
    name = "ect"

    def __init__(self, unet, data, precond: Precond, double_every: int, q: float = Q, k: float = K, b: float = B,
                 huber_c: float = 0.0, classes: list[str] | None = None, flip: bool = False, dataset: str = "",
                 p_mean: float = P_MEAN, p_std: float = P_STD):
        self.unet, self.data, self.precond, self.dataset_spec = unet, data, precond, dataset
        self.double_every, self.q, self.k, self.b, self.huber_c = double_every, q, k, b, huber_c
        self.classes, self.flip, self.p_mean, self.p_std = list(classes or []), flip, p_mean, p_std
        self.on_step_start(0)

    def trainable(self):
        return {"unet": self.unet}

    def dataset(self):
        return self.data

    def on_step_start(self, step: int) -> None:
        self.stage = step // max(1, self.double_every)

    def loss(self, modules, batch, rand):
        y = batch["pixels"]
        if self.flip:
            y = random_hflip(y, rand.rand())
        f = consistency_model(modules["unet"], self.precond)
        labels = batch["label"].to(y.device) if self.classes else None
        t = lognormal_sigmas(rand.randn(), self.p_mean, self.p_std).clamp(min=SIGMA_MIN).to(y.device)
        r = r_of_t(t, self.stage, self.q, self.k, self.b)
        n = rand.randn(*y.shape[1:]).to(y.device, y.dtype)
        x_r = y + append_dims(r, y.ndim).to(y.dtype) * n
        above = r > SIGMA_MIN
        with same_randomness(y.device) as restore:
            student = f(y + append_dims(t, y.ndim).to(y.dtype) * n, t, labels)
            restore()
            with torch.no_grad():
                target = f(x_r, r.clamp(min=SIGMA_MIN), labels) if bool(above.any()) else x_r
        target = torch.where(append_dims(above, y.ndim), target, x_r)
        d = pseudo_huber(student, target, self.huber_c)
        return torch.mean(ect_weight(t, r) * d), {"stage": float(self.stage), "r_zero": float((~above).float().mean())}

    def export(self, result, out):
        save_model(result.modules["unet"].eval().to("cpu"), out, EXPORT_GRID, self.precond)

    def model_info(self):
        return consistency_info(self.classes, EXPORT_GRID, self.dataset_spec, self.precond)
