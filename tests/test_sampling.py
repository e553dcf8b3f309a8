import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from studio.models.backbone import load_pipeline
from studio.cli import main
from studio.diffusion.sampling import generate

PROMPTS = ["a photo of a bag", "a photo of a coat", "a photo of an ankle boot"]


def _diffusers(pipe_dir, prompts, steps, guidance, seed):
    pipe = StableDiffusionPipeline.from_pretrained(str(pipe_dir))
    pipe.set_progress_bar_config(disable=True)
    gens = [torch.Generator().manual_seed(seed + k) for k in range(len(prompts))]
    return pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, generator=gens, output_type="np").images


def test_studio_sampler_equals_plain_diffusers(tiny_pipeline_dir):
    ours = generate(load_pipeline(tiny_pipeline_dir), PROMPTS, steps=6, guidance=5.0, seed=3)
    ref = _diffusers(tiny_pipeline_dir, PROMPTS, 6, 5.0, 3)
    assert ours.shape == ref.shape == (3, 32, 32, 3)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    no_cfg = generate(load_pipeline(tiny_pipeline_dir), PROMPTS, steps=4, guidance=1.0, seed=3)
    np.testing.assert_allclose(no_cfg, _diffusers(tiny_pipeline_dir, PROMPTS, 4, 1.0, 3), atol=1e-5)


def test_image_k_independent_of_batch_size(tiny_pipeline):
    seen = []
    a = generate(tiny_pipeline, PROMPTS, steps=3, guidance=3.0, seed=7, batch_size=3)
    b = generate(tiny_pipeline, PROMPTS, steps=3, guidance=3.0, seed=7, batch_size=1,
                 callback=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (9, 9) and len(seen) == 9 and [d for d, _ in seen] == sorted(d for d, _ in seen)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert not np.allclose(a[0], a[1])


def test_sampling_does_not_mutate_the_pipeline_scheduler(tiny_pipeline):
    before = dict(tiny_pipeline.scheduler.config), tiny_pipeline.scheduler.timesteps.clone()
    generate(tiny_pipeline, PROMPTS[:1], steps=2, guidance=2.0, solver="euler")
    assert dict(tiny_pipeline.scheduler.config) == before[0]
    assert torch.equal(tiny_pipeline.scheduler.timesteps, before[1])


def test_sample_cli_writes_grid_equal_to_diffusers(tiny_pipeline_dir, tmp_path):
    out = tmp_path / "grid.png"
    rc = main(["sample", str(tiny_pipeline_dir), "--prompt", PROMPTS[0], "--num", "2",
               "--steps", "4", "--guidance", "5", "--seed", "0", "--out", str(out)])
    assert rc == 0
    grid = np.asarray(Image.open(out))
    ref = np.rint(_diffusers(tiny_pipeline_dir, [PROMPTS[0]] * 2, 4, 5.0, 0) * 255).astype(int)
    assert grid.shape == (2 + 34, 2 + 34 * 2, 3)  # one row of 2 images, 2 px padding
    assert np.abs(grid[2:34, 2:34].astype(int) - ref[0]).max() <= 1
    assert np.abs(grid[2:34, 36:68].astype(int) - ref[1]).max() <= 1
    assert "parameters" in Image.open(out).info


def test_sample_cli_errors(tmp_path, capsys):
    assert main(["sample", str(tmp_path), "--prompt", "x"]) == 2
    assert "model_index.json" in capsys.readouterr().err
