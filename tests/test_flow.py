"""studio.diffusion.flow: the rectified-flow convention, the Euler sampler and the diffusers export pairing."""

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from studio.models.backbone import load_pipeline, save_pipeline
from studio.diffusion.adapter import flow_velocity as velocity
from studio.diffusion.flow import euler, flow_scheduler, interpolate, time_grid, unet_timestep
from studio.diffusion.sampling import generate

PROMPTS = ["a photo of a bag", "a photo of a coat"]


@pytest.mark.parametrize("steps", [1, 3, 25])
def test_euler_is_exact_for_a_constant_velocity(steps):
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    v = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    t, _ = time_grid(steps)
    out = euler(lambda z, ts: v, x, time_grid(steps))
    torch.testing.assert_close(out, x + float(t[-1] - t[0]) * v, atol=1e-5, rtol=0)  # float32 sums


def test_one_euler_step_along_a_straight_coupling_reproduces_x1():
    g = torch.Generator().manual_seed(2)
    x0, x1 = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t, timesteps = time_grid(1)
    start = interpolate(x0, x1, t[0].expand(3))
    seen = []
    out = euler(lambda z, ts: seen.append(int(ts)) or (x1 - x0), start, (t, timesteps))
    torch.testing.assert_close(out, x1, atol=1e-6, rtol=0)
    assert seen == [999]


def test_grid_and_sign_conventions():
    t, timesteps = time_grid(4)
    assert float(t[0]) == pytest.approx(0.001, abs=1e-6) and float(t[-1]) == 1.0
    assert torch.all(t[1:] > t[:-1])
    assert timesteps.tolist() == [999, 749, 499, 249]  # int(1000 sigma): diffusers' own grid
    assert float(unet_timestep(torch.tensor(0.25))) == 750.0
    assert torch.equal(velocity(torch.ones(2)), -torch.ones(2))
    x0, x1 = torch.zeros(2, 1), torch.ones(2, 1)
    torch.testing.assert_close(interpolate(x0, x1, torch.tensor([0.0, 0.3])), torch.tensor([[0.0], [0.3]]))


@pytest.fixture(scope="module")
def flow_dir(tiny_pipeline, tmp_path_factory):
    from studio.models.presets import build_pipeline, tokenizer_corpus
    from studio.data import FASHION_MNIST_CLASSES

    pipe = build_pipeline("tiny", tokenizer_corpus(FASHION_MNIST_CLASSES), seed=1)
    pipe.scheduler = flow_scheduler()
    return save_pipeline(pipe, tmp_path_factory.mktemp("flow"))


@pytest.mark.parametrize("steps,guidance", [(1, 1.0), (3, 4.0)])
def test_flow_pipeline_in_plain_diffusers_equals_studio_euler(flow_dir, steps, guidance):
    ours = generate(load_pipeline(flow_dir), PROMPTS, steps=steps, guidance=guidance, seed=5)
    ref = StableDiffusionPipeline.from_pretrained(str(flow_dir), safety_checker=None)
    ref.set_progress_bar_config(disable=True)
    gens = [torch.Generator().manual_seed(5 + k) for k in range(len(PROMPTS))]
    theirs = ref(PROMPTS, num_inference_steps=steps, guidance_scale=guidance, generator=gens, output_type="np").images
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert not np.allclose(ours[0], ours[1])


def test_flow_pipeline_refuses_a_diffusion_solver(flow_dir):
    from studio import StudioError

    with pytest.raises(StudioError, match="--solver euler"):
        generate(load_pipeline(flow_dir), PROMPTS[:1], steps=2, solver="dpmsolver")
