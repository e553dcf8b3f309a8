"""iCT formulas, one by one (Song & Dhariwal 2023)."""

import math

import numpy as np
import pytest
import torch

from consistency.recipe import (SIGMA_DATA, SIGMA_MAX, SIGMA_MIN, discretization_steps, karras_sigmas, loss_weights,
                                lognormal_weights)
from studio.diffusion.adapter import consistency_noise as c_noise
from studio.diffusion.adapter import consistency_scalings
from studio.diffusion.losses import huber_c, pseudo_huber


def scalings(sigma):
    return consistency_scalings(sigma, SIGMA_DATA, SIGMA_MIN)


def test_boundary_condition_holds_exactly():
    c_skip, c_out, c_in = scalings(torch.tensor([SIGMA_MIN], dtype=torch.float32))
    assert c_skip.item() == 1.0 and c_out.item() == 0.0
    assert c_in.item() == pytest.approx(1 / math.sqrt(SIGMA_MIN**2 + 0.25))
    c_skip, c_out, _ = scalings(torch.tensor([SIGMA_MAX], dtype=torch.float64))
    assert c_skip.item() == pytest.approx(0.25 / ((SIGMA_MAX - SIGMA_MIN) ** 2 + 0.25))
    assert 0.49 < c_out.item() < 0.5


def test_curriculum_for_400k_iterations():
    steps = [discretization_steps(k, 400_000) for k in range(0, 400_000, 1000)]
    assert sorted(set(steps)) == [11, 21, 41, 81, 161, 321, 641, 1281]
    assert discretization_steps(0, 400_000) == 11 and discretization_steps(399_999, 400_000) == 1281
    assert steps == sorted(steps)
    assert discretization_steps(50_000, 400_000) == 21  # K' = floor(400000 / 8) = 50000


def test_karras_sigmas_ascend_from_sigma_min_to_sigma_max():
    s = karras_sigmas(11)
    assert s[0].item() == pytest.approx(SIGMA_MIN) and s[-1].item() == pytest.approx(SIGMA_MAX)
    assert torch.all(s[1:] > s[:-1])
    # rho = 7 spacing: the 7th roots are equally spaced
    roots = s ** (1 / 7)
    torch.testing.assert_close(roots[1:] - roots[:-1], torch.full((10,), (roots[-1] - roots[0]).item() / 10,
                                                                   dtype=torch.float64))


def test_lognormal_weights_equal_scipys_lognormal_mass_per_interval():
    """p(sigma_i) is the lognormal(P_mean, P_std) probability of [sigma_i, sigma_{i+1}), renormalised over
    the grid's span: checked against scipy's lognormal CDF."""
    from scipy.stats import lognorm

    for n in (11, 161, 1281):
        s = karras_sigmas(n).numpy()
        mass = np.diff(lognorm.cdf(s, 2.0, scale=np.exp(-1.1)))
        np.testing.assert_allclose(lognormal_weights(karras_sigmas(n)).numpy(), mass / mass.sum(), rtol=1e-9)
    w = lognormal_weights(karras_sigmas(1281))
    peak = karras_sigmas(1281)[w.argmax()]
    assert 0.1 < peak.item() < 1.0  # the most probable bin lies near the median exp(P_mean) = 0.33


def test_loss_weights_positive_and_largest_at_small_sigma():
    lam = loss_weights(karras_sigmas(1281))
    assert torch.all(lam > 0) and lam[0] > lam[-1]
    assert lam.max().item() == pytest.approx(1 / (karras_sigmas(1281)[1] - SIGMA_MIN).item())


def test_pseudo_huber_constant_and_per_sample_norm():
    assert huber_c(3072) == pytest.approx(0.0299, abs=1e-4)
    a, b = torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 2, 2)
    b[0, 0, 0, 0], b[0, 1, 1, 1] = 3.0, 4.0  # per-sample norm 5, not elementwise
    out = pseudo_huber(a, b, 0.5)
    assert out.shape == (2,)
    assert out[0].item() == pytest.approx(math.sqrt(25 + 0.25) - 0.5) and out[1].item() == 0.0


def test_c_noise_is_diffusers_sigma_to_t():
    from diffusers import CMStochasticIterativeScheduler

    sched = CMStochasticIterativeScheduler()
    sigmas = torch.tensor([0.002, 0.5, 80.0])
    torch.testing.assert_close(c_noise(sigmas), torch.as_tensor(sched.sigma_to_t(sigmas), dtype=torch.float32))
