"""Easy Consistency Tuning (consistency.ect) and the consistency options' exports (CPU, seconds)."""

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import ConsistencyModelPipeline
from safetensors.torch import load_file

from conftest import subprocess_env
from consistency.ect import ECTObjective, ect_weight, n_of_t, r_of_t
from consistency.model import Precond, build_unet, consistency_model, edm_denoiser
from consistency.recipe import SIGMA_MIN
from consistency.sampling import export_pipeline, sample, save_model
from studio import StudioError
from studio.cli import main
from studio.training.randomness import StepRandom

SMALL = dict(block_out_channels=(16, 32, 32), norm_num_groups=8, attention_head_dim=16)


def test_r_lies_below_t_and_shrinks_towards_it_stage_by_stage():
    t = torch.exp(-1.1 + 2.0 * torch.randn(20000, dtype=torch.float64))
    prev_gap, prev_zero = None, None
    for stage in range(8):
        r = r_of_t(t, stage)
        assert (r >= 0).all() and (r < t).all()
        gap = t - r
        zero = (r == 0).double().mean().item()
        unclamped = r > 0
        # dt = t n(t) / q^(stage + 1) wherever r is not clamped at 0
        torch.testing.assert_close(gap[unclamped], (t * n_of_t(t) / 2.0 ** (stage + 1))[unclamped])
        if prev_gap is not None:
            assert (gap <= prev_gap).all() and zero <= prev_zero
            both = unclamped & (prev_gap < t)
            torch.testing.assert_close(gap[both], prev_gap[both] / 2)  # halves at every stage (q = 2)
        prev_gap, prev_zero = gap, zero
    # stage 0 clamps r = 0 wherever n(t) > 2, i.e. t < ln 7 (about 81 % of ECT's lognormal)
    assert torch.equal(r_of_t(t, 0) == 0, t < np.log(7.0))
    assert prev_zero == 0.0  # from stage 2 on q^(stage+1) > n(t) everywhere
    assert n_of_t(torch.tensor(0.0)).item() == pytest.approx(5.0)
    assert ect_weight(torch.tensor(2.0), torch.tensor(1.5)).item() == pytest.approx(2.0)


def test_at_initialisation_f_is_the_diffusion_denoiser_up_to_the_boundary_shift():
    """f and D share F; they differ only by the scalings' sigma_min shift, so |f - D| <= |dc_skip| |x| +
    |dc_out| |F| with dc of order sigma_min / sigma: below 2 % of |x| + |F| at sigma >= 0.1, and 0.5 % at 1."""
    unet = build_unet(0, **SMALL).eval()
    pre = Precond(0.87, 0.25)
    f, d = consistency_model(unet, pre), edm_denoiser(unet, pre)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        for sig, tol in ((0.1, 0.02), (1.0, 0.005), (80.0, 1e-4)):
            s = torch.full((4,), sig)
            F = unet(x / (sig**2 + 0.87**2) ** 0.5, 0.25 * torch.log(s)).sample
            gap = (f(x, s) - d(x, s)).abs().max().item()
            assert gap <= tol * (x.abs().max() + F.abs().max()).item(), (sig, gap)
        assert torch.equal(f(x, torch.full((4,), SIGMA_MIN)), x)  # the boundary condition, exactly


class Pixels:
    def __len__(self):
        return 8

    def batch(self, indices):
        x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
        return {"pixels": x[list(indices)], "label": torch.arange(8)[list(indices)] % 10}


def test_a_few_tuning_steps_lower_the_loss_on_a_fixed_batch():
    unet = build_unet(10, dropout=0.2, **SMALL).train()
    obj = ECTObjective(unet, Pixels(), Precond(0.6, 0.25), double_every=20, classes=[str(i) for i in range(10)],
                       flip=True)
    opt = torch.optim.Adam(unet.parameters(), lr=2e-3)
    losses = []
    for step in range(30):
        obj.on_step_start(step)
        loss, logs = obj.loss({"unet": unet}, Pixels().batch(range(8)), StepRandom(1, 0, 0, 0, 1, 8))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert logs["stage"] == 1.0
    assert np.mean(losses[15:20]) < 0.8 * np.mean(losses[:5]), losses  # within stage 0


def test_every_noise_scale_survives_the_export_or_is_refused(tmp_path):
    unet = build_unet(10, **SMALL).eval()
    labels = torch.tensor([3, 7])
    pre = Precond(0.87, 250.0)  # a measured sigma_data goes into the scheduler's config
    save_model(unet, tmp_path / "a", 41, pre)
    pipe = ConsistencyModelPipeline.from_pretrained(str(tmp_path / "a"))
    pipe.set_progress_bar_config(disable=True)
    assert pipe.scheduler.config.sigma_data == 0.87
    gens = [torch.Generator().manual_seed(5 + k) for k in range(2)]
    theirs = pipe(batch_size=2, num_inference_steps=1, class_labels=labels, generator=gens, output_type="np").images
    ours = ((sample(unet, 2, seed=5, class_labels=labels, precond=pre) + 1) / 2).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    other = ((sample(unet, 2, seed=5, class_labels=labels) + 1) / 2).permute(0, 2, 3, 1).numpy()
    assert np.abs(other - theirs).max() > 1e-3  # sigma_data matters, so the check above can fail
    with pytest.raises(StudioError, match="cannot be exported as a diffusers ConsistencyModelPipeline"):
        export_pipeline(unet, 41, Precond(0.87, 0.25))
    save_model(unet, tmp_path / "b", 41, Precond(0.87, 0.25))
    assert (tmp_path / "b" / "unet").is_dir() and not (tmp_path / "b" / "model_index.json").exists()


def tune_cmd(init, data_dir, out, *extra):
    return [sys.executable, "-m", "studio", "ict", "tune", "--init", str(init), "--data-dir", str(data_dir),
            "--out", str(out), "--steps", "8", "--batch-size", "4", "--checkpoint-every", "2", "--ema-decay", "0.9",
            "--tracker", "none", "--no-progress", "--log-every", "1", *extra]


def run(cmd):
    p = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


def test_tune_from_an_edm_model_resumes_exactly_after_sigkill(fake_fmnist, tmp_path):
    init = tmp_path / "edm"
    assert main(["edm", "train", "--data-dir", str(fake_fmnist), "--out", str(init), "--steps", "2", "--batch-size",
                 "4", "--conditional", "--tracker", "none", "--no-progress"]) == 0
    run(tune_cmd(init, fake_fmnist, tmp_path / "full"))
    info = json.loads((tmp_path / "full" / "studio_model.json").read_text())
    edm_info = json.loads((init / "studio_model.json").read_text())
    assert info["kind"] == "consistency" and info["class_names"] == edm_info["class_names"]
    assert (info["sigma_data"], info["noise_scale"]) == (edm_info["sigma_data"], 0.25)
    out = tmp_path / "killed"
    proc = subprocess.Popen(tune_cmd(init, fake_fmnist, out), env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "train" / "checkpoints" / "step-00000004"
    while not ckpt.exists():
        assert proc.poll() is None, "the run ended before its checkpoint appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "studio_model.json").exists(), "the run finished before it was killed"
    assert "resumed from" in run(tune_cmd(init, fake_fmnist, out, "--resume", "latest")).stdout
    a = load_file(str(tmp_path / "full" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    grid = tmp_path / "g.png"
    assert main(["ict", "sample", str(out), "--steps", "2", "--num", "4", "--out", str(grid)]) == 0 and grid.is_file()
    # a resume with other settings is refused, and so is an init that is not an EDM model
    assert main(tune_cmd(init, fake_fmnist, out, "--resume", "latest", "--q", "4")[3:]) == 2
    assert main(tune_cmd(out, fake_fmnist, tmp_path / "x")[3:]) == 2


def test_ict_options_train_a_studio_model_folder_that_samples_and_scores(fake_fmnist, tmp_path):
    """--noise-scale 0.25 (not expressible in diffusers), a measured sigma_data and flips: the run writes the
    studio folder (no model_index.json), which `ict sample` and FID read; the prompt must name a class."""
    from studio.fid.run import FIDConfig, FIDOptions, compute_fid
    from studio.models.generators import label_of_prompt

    out = tmp_path / "ict"
    assert main(["ict", "train", "--data-dir", str(fake_fmnist), "--out", str(out), "--steps", "2", "--batch-size",
                 "4", "--conditional", "--noise-scale", "0.25", "--sigma-data", "0", "--flip", "--tracker", "none",
                 "--no-progress"]) == 0
    info = json.loads((out / "studio_model.json").read_text())
    assert info["noise_scale"] == 0.25 and 0.3 < info["sigma_data"] < 1.0 and info["sigma_data"] != 0.5
    assert not (out / "model_index.json").exists()
    assert main(["ict", "sample", str(out), "--num", "4", "--out", str(tmp_path / "g.png")]) == 0
    res = compute_fid(FIDConfig(real="fashion-mnist:test", fake=str(out), opts=FIDOptions(
        num=20, data_dir=str(fake_fmnist), metrics="fid,per-class", cache=False)))
    assert res["fid"] > 0 and res["n_fake"] == 20
    with pytest.raises(StudioError, match="names none of this model's classes"):
        compute_fid(FIDConfig(real="fashion-mnist:test", fake=str(out), opts=FIDOptions(
            num=20, data_dir=str(fake_fmnist), prompts=str(_prompt_file(tmp_path)), cache=False)))
    names = ["t-shirt/top", "trouser", "boot", "ankle boot"]
    assert [label_of_prompt(p, names) for p in ["A T-shirt.", "two trousers", "an ankle boot", "a boot"]] == [0, 1, 3, 2]


def _prompt_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("a photo of a cat\n")
    return path
