"""DMD2: the distribution-matching gradient on analytic cases, the fake score's bottleneck, which group moves
which weights, exact resume after SIGKILL, and the one-step export in plain diffusers."""

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from conftest import subprocess_env
from distill.dmd.objective import DMDObjective
from distill.dmd.scores import FakeScore, bottleneck, denoised, dmd_gradient, dmd_loss
from studio.cli import main
from studio.data import load_dataset
from studio.diffusion.flow import flow_scheduler
from studio.diffusion.sampling import generate, sample_latents
from studio.models.backbone import load_pipeline, save_pipeline
from studio.models.levers import MemoryLevers
from studio.training.randomness import StepRandom


def test_the_gradient_on_a_hand_computed_case():
    x, mu_real, mu_fake = torch.tensor([[4.0, 0.0]]), torch.tensor([[2.0, 2.0]]), torch.tensor([[3.0, 0.0]])
    # p_real = (2, -2), mean |p_real| = 2, p_fake = (1, 0): grad = ((2, -2) - (1, 0)) / 2
    torch.testing.assert_close(dmd_gradient(x, mu_real, mu_fake), torch.tensor([[0.5, -1.0]]))


def test_the_gradient_is_zero_when_the_fake_score_equals_the_real_one():
    x, mu = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    assert torch.count_nonzero(dmd_gradient(x, mu, mu.clone())) == 0
    x.requires_grad_(True)
    loss = dmd_loss(x, dmd_gradient(x.detach(), mu, mu))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(x.grad) == 0


def _posterior_mean(x_t, a, s, m, sd):
    """E[x | x_t] for x ~ N(m, sd^2 I) and x_t = a x + s n: m + a sd^2 / (a^2 sd^2 + s^2) (x_t - a m)."""
    return m + a * sd**2 / (a**2 * sd**2 + s**2) * (x_t - a * m)


def test_on_two_gaussians_the_gradient_moves_fake_samples_towards_the_real_distribution():
    """2-D, real N(m_r, 1), fake N(m_f, 0.5^2), both denoisers analytic: descending the DMD loss moves the
    samples from the fake towards the real distribution, and its gradient is grad / numel."""
    g = torch.Generator().manual_seed(0)
    m_r, m_f = torch.tensor([2.0, -1.0]), torch.tensor([-1.0, 1.0])
    x = m_f + 0.5 * torch.randn(4096, 2, generator=g)
    abar = torch.tensor(0.3)
    a, s = abar.sqrt(), (1 - abar).sqrt()
    x_t = a * x + s * torch.randn(x.shape, generator=g)
    grad = dmd_gradient(x, _posterior_mean(x_t, a, s, m_r, 1.0), _posterior_mean(x_t, a, s, m_f, 0.5))
    step = -grad.mean(0)
    cosine = torch.dot(step, m_r - m_f) / (step.norm() * (m_r - m_f).norm())
    assert cosine > 0.99
    y = x.clone().requires_grad_(True)
    dmd_loss(y, grad).backward()
    torch.testing.assert_close(y.grad, grad / grad.numel())
    moved = x - 0.1 * grad
    assert (moved.mean(0) - m_r).norm() < (x.mean(0) - m_r).norm() - 0.05
    # the epsilon form of the same denoiser: eps = (x_t - a mu) / s gives back mu
    mu = _posterior_mean(x_t, a, s, m_r, 1.0)
    alphas = torch.full((1000,), 0.3)
    t = torch.full((x.shape[0],), 500)
    torch.testing.assert_close(denoised(x_t, (x_t - a * mu) / s, alphas, t), mu)


def test_the_bottleneck_is_the_mid_block_output_of_the_unets_forward(tiny_pipeline):
    unet = tiny_pipeline.unet
    seen = {}
    hook = unet.mid_block.register_forward_hook(lambda m, i, o: seen.setdefault("mid", o))
    x, t, cond = torch.randn(2, 4, 16, 16), torch.tensor([10, 900]), torch.randn(2, 77, 32)
    with torch.no_grad():
        unet(x, t, encoder_hidden_states=cond)
        mine = bottleneck(unet, x, t, cond)
    hook.remove()
    torch.testing.assert_close(mine, seen["mid"])
    assert FakeScore(unet, gan=True)(cls_x=x, cls_t=t, cls_cond=cond)[1].shape == (2, 1)


def _flow_pipe(tiny_pipeline_dir, tmp_path):
    pipe = load_pipeline(tiny_pipeline_dir)
    pipe.scheduler = flow_scheduler()
    return save_pipeline(pipe, tmp_path / "flow")


@pytest.mark.parametrize("checkpointing", [False, True])
def test_each_update_leaves_the_other_network_without_gradient(checkpointing, tiny_pipeline_dir, fake_fmnist,
                                                                tmp_path):
    """The generator's loss (with the GAN term through the fake score's classifier) reaches no fake-score weight,
    the guidance loss no generator weight; also with gradient checkpointing on both UNets."""
    data = load_dataset("fashion-mnist", data_dir=str(fake_fmnist), resolution=32, limit=16)
    m = DMDObjective(load_pipeline(_flow_pipe(tiny_pipeline_dir, tmp_path)), load_pipeline(tiny_pipeline_dir), data,
                     real_guidance=3.0, gan=True, gan_gen_weight=1.0, gan_cls_weight=1.0,
                     levers=MemoryLevers(gradient_checkpointing=checkpointing))
    m.setup(torch.device("cpu"))
    modules, batch = m.trainable(), data.batch(list(range(4)))
    for mod in modules.values():
        mod.train()
    for group, own, other in (("generator", "generator", "fake"), ("guidance", "fake", "generator")):
        for mod in modules.values():
            mod.zero_grad(set_to_none=True)
        loss, _ = m.group_loss(group, modules, batch, StepRandom(0, 0, 0, 0, 1, 4))
        loss.backward()
        assert all(p.grad is None for p in modules[other].parameters()), group
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in modules[own].parameters()), group
    assert all(p.grad is not None for p in modules["fake"].head.parameters())  # the classifier trains


def test_at_the_start_with_no_guidance_the_fake_score_equals_the_real_one(tiny_pipeline_dir, fake_fmnist):
    """The fake score starts as a copy of the teacher, so with guidance 1 the DMD gradient is exactly zero."""
    data = load_dataset("fashion-mnist", data_dir=str(fake_fmnist), resolution=32, limit=8)
    m = DMDObjective(load_pipeline(tiny_pipeline_dir), load_pipeline(tiny_pipeline_dir), data, real_guidance=1.0)
    m.setup(torch.device("cpu"))
    loss, logs = m.group_loss("generator", m.trainable(), data.batch(list(range(4))), StepRandom(0, 0, 0, 0, 1, 4))
    assert loss.item() == 0.0 and logs["grad_norm_dm"] == 0.0
    m.real_guidance = 3.0
    loss, logs = m.group_loss("generator", m.trainable(), data.batch(list(range(4))), StepRandom(0, 0, 0, 0, 1, 4))
    assert logs["grad_norm_dm"] > 0


def dmd_cmd(teacher, init, data_dir, out, *extra):
    return [sys.executable, "-m", "studio", "dmd", "train", "--teacher", str(teacher), "--init", str(init),
            "--data-dir", str(data_dir), "--out", str(out), "--steps", "6", "--batch-size", "2", "--update-ratio",
            "2", "--lr", "1e-3", "--warmup-steps", "0", "--checkpoint-every", "2", "--tracker", "none",
            "--no-progress", "--log-every", "1", "--gan", *extra]


def _run(cmd):
    p = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


def test_a_dmd_run_resumes_exactly_after_sigkill(tiny_pipeline_dir, fake_fmnist, tmp_path):
    init = _flow_pipe(tiny_pipeline_dir, tmp_path)
    _run(dmd_cmd(tiny_pipeline_dir, init, fake_fmnist, tmp_path / "full"))
    out = tmp_path / "killed"
    proc = subprocess.Popen(dmd_cmd(tiny_pipeline_dir, init, fake_fmnist, out), env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "train" / "checkpoints" / "step-00000002"
    while not ckpt.exists():
        assert proc.poll() is None, "the run ended before its checkpoint appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "studio_model.json").exists(), "the run finished before it was killed"
    assert "resumed from" in _run(dmd_cmd(tiny_pipeline_dir, init, fake_fmnist, out, "--resume", "latest")).stdout
    a = load_file(str(tmp_path / "full" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    info = json.loads((out / "studio_model.json").read_text())
    assert (info["kind"], info["method"], info["steps"], info["gan"]) == ("one-step-student", "dmd2", 1, True)
    # a resume with other settings is refused
    assert main(dmd_cmd(tiny_pipeline_dir, init, fake_fmnist, out, "--resume", "latest", "--real-guidance", "3")[3:]) == 2


@pytest.mark.parametrize("start", ["teacher", "flow"])
def test_the_export_samples_in_plain_diffusers_as_the_trained_map_and_studio_sample(start, tiny_pipeline_dir,
                                                                                      fake_fmnist, tmp_path):
    init = tiny_pipeline_dir if start == "teacher" else _flow_pipe(tiny_pipeline_dir, tmp_path)
    out = tmp_path / "dmd"
    assert main(dmd_cmd(tiny_pipeline_dir, init, fake_fmnist, out, "--steps", "2")[3:]) == 0
    prompts = ["a photo of a dress", "an image of a bag"]
    ours = generate(load_pipeline(out), prompts, steps=1, guidance=1.0, seed=3)
    plain = StableDiffusionPipeline.from_pretrained(str(out), safety_checker=None)
    gens = [torch.Generator().manual_seed(3 + k) for k in range(2)]
    theirs = plain(prompts, num_inference_steps=1, guidance_scale=1.0, generator=gens, output_type="np").images
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # the map the generator was trained as is the exported sampler's
    data = load_dataset("fashion-mnist", data_dir=str(fake_fmnist), resolution=32, limit=8)
    pipe = load_pipeline(out)
    m = DMDObjective(load_pipeline(init), load_pipeline(tiny_pipeline_dir), data)
    m.setup(torch.device("cpu"))
    z = torch.stack([torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(3 + k)) for k in range(2)])
    with torch.no_grad():
        trained = m.generate(pipe.unet, z, m.gen_text(prompts, "cpu"))
    torch.testing.assert_close(trained, sample_latents(pipe, prompts, 1, 1.0, [3, 4]), atol=1e-5, rtol=1e-5)
