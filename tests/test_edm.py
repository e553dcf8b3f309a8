"""The EDM diffusion objective and sampler (studio.diffusion.edm, consistency.edm): the paper's formulas,
analytic Gaussian cases, and the export against diffusers' EDMEulerScheduler."""

import json
import math

import pytest
import torch
from diffusers import EDMEulerScheduler, UNet2DModel

from consistency.edm import EDMObjective, sample
from consistency.model import Precond, build_unet, edm_denoiser, load_model
from studio import StudioError
from studio.cli import main
from studio.diffusion.adapter import consistency_noise, consistency_scalings
from studio.diffusion.edm import data_rms, edm_loss, heun_sample, loss_weight, sampling_sigmas
from studio.training.randomness import StepRandom

SMALL = dict(block_out_channels=(16, 32, 32), norm_num_groups=8, attention_head_dim=16)


def test_preconditioning_is_the_papers_table_1():
    sd = 0.5
    for s in (0.002, 0.5, 1.0, 80.0):
        sigma = torch.tensor([s], dtype=torch.float64)
        c_skip, c_out, c_in = consistency_scalings(sigma, sd, 0.0)
        assert c_skip.item() == pytest.approx(sd**2 / (s**2 + sd**2))
        assert c_out.item() == pytest.approx(s * sd / math.sqrt(s**2 + sd**2))
        assert c_in.item() == pytest.approx(1 / math.sqrt(s**2 + sd**2))
        assert consistency_noise(sigma, 0.25).item() == pytest.approx(math.log(s) / 4)
        # lambda c_out^2 = 1: the weighted loss is an unweighted loss on F (eq. 8)
        assert (loss_weight(sigma, sd) * c_out**2).item() == pytest.approx(1.0)
    assert loss_weight(torch.tensor(1.0), 0.5).item() == pytest.approx((1 + 0.25) / 0.25)


def test_steps_follow_eq_5():
    s = sampling_sigmas(18)
    assert len(s) == 19 and s[0] == pytest.approx(80.0) and s[17] == pytest.approx(0.002) and s[18] == 0.0
    rho = 7
    assert s[5] == pytest.approx((80 ** (1 / rho) + 5 / 17 * (0.002 ** (1 / rho) - 80 ** (1 / rho))) ** rho)
    assert sampling_sigmas(1) == [80.0, 0.0]


def gaussian_denoiser(s: float):
    """The ideal denoiser of N(0, s^2 I) data: D(x; sigma) = s^2 / (s^2 + sigma^2) x."""
    return lambda x, sigma: (s**2 / (s**2 + sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2)) * x


def test_heun_solves_the_probability_flow_of_gaussian_data_to_second_order():
    """x(sigma) = x(sigma_max) sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_max^2) solves dx/dsigma = (x - D)/sigma.
    Doubling the steps divides Heun's error by about 4 (2nd order) and Euler's by about 2 (1st order)."""
    s = 0.7
    x_T = torch.randn(16, 3, 4, 4, dtype=torch.float64) * 80.0
    exact = x_T * s / math.sqrt(s**2 + 80.0**2)

    def err(n, heun):
        out = heun_sample(gaussian_denoiser(s), x_T, sampling_sigmas(n), heun=heun)
        return ((out - exact).abs().max() / exact.abs().max()).item()

    h = [err(n, True) for n in (18, 36, 72)]
    e = [err(n, False) for n in (18, 36, 72)]
    assert h[0] < 0.06 and h[2] < 0.004
    assert all(3.0 < a / b < 5.0 for a, b in zip(h, h[1:])), h
    assert all(1.7 < a / b < 2.3 for a, b in zip(e, e[1:])), e


def test_loss_of_the_ideal_denoiser_is_one_at_every_sigma():
    """With sigma_data = s, lambda E||D* - y||^2 = lambda s^2 sigma^2 / (s^2 + sigma^2) = 1 per pixel."""
    s = 0.8
    g = torch.Generator().manual_seed(0)
    y = torch.randn(4096, 1, 4, 4, generator=g) * s
    for sig in (0.01, 0.5, 3.0, 50.0):
        sigma = torch.full((4096,), sig)
        loss = edm_loss(gaussian_denoiser(s), y, sigma, torch.randn(y.shape, generator=g), s)
        assert loss.item() == pytest.approx(1.0, rel=0.03)
    assert data_rms([y[:100], y[100:]]) == pytest.approx(s, rel=0.02)


class Pixels:
    def __len__(self):
        return 8

    def batch(self, indices):
        x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
        return {"pixels": x[list(indices)], "label": torch.arange(8)[list(indices)] % 10}


def test_a_few_steps_on_a_fixed_batch_lower_the_loss():
    unet = build_unet(0, **SMALL).train()
    obj = EDMObjective(unet, Pixels(), Precond(0.58, 0.25), flip=True)
    opt = torch.optim.Adam(unet.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss, _ = obj.loss({"unet": unet}, Pixels().batch(range(8)), StepRandom(1, 0, 0, 0, 1, 8))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5]), losses


def test_export_samples_in_plain_diffusers_as_the_studios_euler(fake_fmnist, tmp_path):
    out = tmp_path / "edm"
    assert main(["edm", "train", "--data-dir", str(fake_fmnist), "--out", str(out), "--steps", "2", "--batch-size",
                 "4", "--conditional", "--tracker", "none", "--no-progress"]) == 0
    info = json.loads((out / "studio_model.json").read_text())
    assert info["kind"] == "edm" and len(info["class_names"]) == 10 and info["noise_scale"] == 0.25
    assert info["sigma_data"] == pytest.approx(0.7, abs=0.3) and not (out / "model_index.json").exists()
    unet = UNet2DModel.from_pretrained(str(out / "unet")).eval()
    sched = EDMEulerScheduler.from_pretrained(str(out / "scheduler"))
    assert sched.config.sigma_data == info["sigma_data"]
    labels = torch.tensor([3, 7])
    x = torch.cat([torch.randn((1, 3, 32, 32), generator=torch.Generator().manual_seed(5 + k)) for k in range(2)])
    sched.set_timesteps(4)
    x = x * sched.init_noise_sigma
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(sched.scale_model_input(x, t), t, class_labels=labels).sample, t, x).prev_sample
    ours = sample(unet, Precond.of(info), 2, seed=5, steps=4, labels=labels, heun=False)
    torch.testing.assert_close(ours, x.clamp(-1, 1), atol=5e-4, rtol=0)  # diffusers keeps its sigmas in float32
    assert main(["edm", "sample", str(out), "--num", "10", "--steps", "3", "--out", str(tmp_path / "g.png")]) == 0
    assert main(["edm", "sample", str(out), "--class-label", "10", "--out", str(tmp_path / "h.png")]) == 2
    with pytest.raises(StudioError, match="holds a 'edm' model"):
        load_model(out, ("consistency",))


def test_another_noise_scale_gets_no_scheduler(tmp_path):
    from studio.training.loop import TrainResult

    unet = build_unet(0, **SMALL).eval()
    obj = EDMObjective(unet, Pixels(), Precond(0.5, 250.0))
    obj.export(TrainResult(0, False, {"unet": unet}), tmp_path)
    assert (tmp_path / "unet").is_dir() and not (tmp_path / "scheduler").exists()
    assert "studio sampling only" in obj.model_info()["note"]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # 250 ln(sigma) reaches the UNet as a float timestep, not cast to an integer
        a = edm_denoiser(unet, Precond(0.5, 250.0))(x, torch.full((2,), 1.001))
        b = edm_denoiser(unet, Precond(0.5, 250.0))(x, torch.full((2,), 1.0))
    assert not torch.equal(a, b)
