"""iCT objective, sampling and export on a small UNet2DModel (CPU, seconds)."""

import json

import numpy as np
import pytest
import torch
from diffusers import ConsistencyModelPipeline

from consistency.model import build_unet, consistency_model
from consistency.objective import ICTObjective, same_randomness
from consistency.recipe import SIGMA_MIN
from consistency.sampling import diffusers_timesteps, export_pipeline, sample
from studio.cli import main
from studio.training.randomness import StepRandom

SMALL = dict(block_out_channels=(16, 32, 32), norm_num_groups=8, attention_head_dim=16)


class Pixels:
    """Eight fixed 32x32 images in [-1, 1] with labels."""

    def __len__(self):
        return 8

    def batch(self, indices):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
        return {"pixels": x[list(indices)], "label": torch.arange(8)[list(indices)] % 10}


def test_boundary_condition_of_the_network_is_exact():
    unet = build_unet(10, **SMALL).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = consistency_model(unet)(x, torch.full((3,), SIGMA_MIN), torch.tensor([0, 1, 2]))
    assert torch.equal(out, x)


def test_dropout_masks_are_identical_in_both_passes():
    drop = torch.nn.Dropout(0.5)
    x = torch.ones(1000)
    with same_randomness(torch.device("cpu")) as restore:
        a = drop(x)
        restore()
        b = drop(x)
    assert torch.equal(a, b) and (a == 0).any()
    # inside the objective: record each dropout layer's mask in both passes of one loss call
    unet = build_unet(0, dropout=0.5, **SMALL).train()
    masks = {}

    def hook(mod, inp, out):
        masks.setdefault(id(mod), []).append((out == 0) & (inp[0] != 0))

    handles = [m.register_forward_hook(hook) for m in unet.modules() if isinstance(m, torch.nn.Dropout)]
    obj = ICTObjective(unet, Pixels(), total_steps=100)
    obj.loss({"unet": unet}, Pixels().batch(range(4)), StepRandom(0, 0, 0, 0, 1, 4))
    for h in handles:
        h.remove()
    assert masks and all(len(v) == 2 for v in masks.values())
    assert all(torch.equal(v[0], v[1]) for v in masks.values())
    assert any(v[0].any() for v in masks.values())


def test_a_few_steps_on_a_fixed_batch_lower_the_loss():
    unet = build_unet(10, **SMALL).train()
    obj = ICTObjective(unet, Pixels(), total_steps=100, conditional=True)
    batch = Pixels().batch(range(8))
    opt = torch.optim.Adam(unet.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, logs = obj.loss({"unet": unet}, batch, StepRandom(1, 0, 0, 0, 1, 8))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert logs["num_scales"] == 11
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses


def test_curriculum_advances_with_the_step():
    obj = ICTObjective(build_unet(0, **SMALL), Pixels(), total_steps=800)
    seen = []
    for step in (0, 99, 100, 500, 799):
        obj.on_step_start(step)
        seen.append(obj.num_scales)
    assert seen == [11, 11, 21, 321, 1281]
    idx = obj.draw_indices(torch.rand(10000))
    assert idx.min() >= 0 and idx.max() <= 1279


def test_export_round_trip_matches_studio_sampling(tmp_path):
    unet = build_unet(10, **SMALL).eval()
    export_pipeline(unet, 41).save_pretrained(str(tmp_path / "cm"), safe_serialization=True)
    pipe = ConsistencyModelPipeline.from_pretrained(str(tmp_path / "cm"))
    pipe.set_progress_bar_config(disable=True)
    labels = torch.tensor([3, 7])
    gens = [torch.Generator().manual_seed(5 + k) for k in range(2)]
    theirs = pipe(batch_size=2, num_inference_steps=1, class_labels=labels, generator=gens, output_type="np").images
    ours = ((sample(pipe.unet, 2, seed=5, class_labels=labels) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # two steps: plain diffusers needs a sigma on its Karras grid; the studio takes the same grid point
    ts, sigmas = diffusers_timesteps([80.0, 0.821], 41)
    assert sigmas[0] == pytest.approx(80.0) and sigmas[1] == pytest.approx(0.821, rel=0.1) and ts[-1] == 0
    gens = [torch.Generator().manual_seed(5 + k) for k in range(2)]
    theirs = pipe(batch_size=2, timesteps=ts, class_labels=labels, generator=gens, output_type="np").images
    ours = ((sample(pipe.unet, 2, seed=5, sigmas=sigmas, class_labels=labels) + 1) / 2).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_ict_train_cli_exports_a_loadable_pipeline(fake_fmnist, tmp_path):
    out = tmp_path / "ict"
    assert main(["ict", "train", "--data-dir", str(fake_fmnist), "--out", str(out), "--steps", "2", "--batch-size",
                 "4", "--conditional", "--tracker", "none", "--no-progress", "--checkpoint-every", "1"]) == 0
    info = json.loads((out / "studio_model.json").read_text())
    assert info["kind"] == "consistency" and len(info["class_names"]) == 10
    assert json.loads((out / "config.json").read_text())["train"]["mixed_precision"] == "no"  # auto, resolved
    pipe = ConsistencyModelPipeline.from_pretrained(str(out))
    assert pipe.unet.config.num_class_embeds == 10
    grid = tmp_path / "g.png"
    assert main(["ict", "sample", str(out), "--steps", "2", "--num", "4", "--out", str(grid)]) == 0
    from PIL import Image

    from studio.images import make_grid, to_unit_hwc

    images = sample(pipe.unet, 4, seed=0, sigmas=[80.0, 0.821], class_labels=[0, 1, 2, 3])  # image k: class k mod 10
    assert np.array_equal(np.asarray(Image.open(grid)), np.asarray(make_grid(to_unit_hwc(images), nrow=10)))
    assert main(["ict", "train", "--data-dir", str(fake_fmnist), "--out", str(tmp_path / "x"), "--steps", "1",
                 "--mixed-precision", "fp16"]) == 2


def test_ict_precision_auto_is_fp32_and_fp16_is_refused():
    """auto resolves to fp32 for iCT (bf16 rounding swamps the small student-target difference at
    large N), explicit choices pass through, fp16 is refused with a StudioError."""
    from consistency.commands import ict_precision
    from studio import StudioError

    assert ict_precision("auto") == "no"
    assert ict_precision("bf16") == "bf16" and ict_precision("no") == "no"
    with pytest.raises(StudioError, match="fp16"):
        ict_precision("fp16")


def test_diffusion_baseline_export_matches_its_sampler_and_clips_x0(tmp_path):
    """The benchmark's DDPM baseline: the saved DDPMPipeline gives sample()'s images, and an
    untrained UNet (x0 predictions far outside the data range) still yields in-range samples
    before the final clamp, because the solver clips x0 as DDPM's sampler does."""
    from diffusers import DDPMPipeline

    from consistency.diffusion_baseline import export_pipeline as export_ddpm
    from consistency.diffusion_baseline import sample as sample_ddpm
    from consistency.diffusion_baseline import solver

    unet = build_unet(0, 0.0, seed=3, block_out_channels=(16, 16, 16), norm_num_groups=8, attention_head_dim=8).eval()
    export_ddpm(unet).save_pretrained(tmp_path / "ddpm")
    pipe = DDPMPipeline.from_pretrained(tmp_path / "ddpm")
    gens = [torch.Generator("cpu").manual_seed(5 + k) for k in range(2)]
    ours = sample_ddpm(unet, 2, seed=5, steps=3)
    torch.testing.assert_close(sample_ddpm(unet, 1, seed=6, steps=3), ours[1:], atol=1e-4, rtol=0)  # seed + k only
    theirs = pipe(batch_size=2, generator=gens, num_inference_steps=3, output_type="np").images
    np.testing.assert_allclose((ours.permute(0, 2, 3, 1).numpy() + 1) / 2, theirs, atol=1e-5)
    sched = solver()
    sched.set_timesteps(3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=g)
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample * 50, t, x, generator=g).prev_sample
    assert x.abs().max() <= 1.0 + 1e-5
