"""Reflow / InstaFlow on the tiny preset: pairs, 2-RF, one-step distillation, export, straightness."""

import json
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from conftest import subprocess_env
from distill.reflow.config import DistillConfig, PairsConfig, ReflowTrainConfig
from distill.reflow.objective import DistillObjective, ReflowObjective
from distill.reflow.pairs import PairsDataset, generate_pairs, shards_of_rank
from distill.reflow.straightness import measure, straightness
from distill.reflow.commands import train_reflow, train_student
from studio import StudioError
from studio.models.backbone import load_pipeline
from studio.cli import main
from studio.models.model_info import read_model_info
from studio.training.randomness import StepRandom
from studio.diffusion.sampling import generate
from studio.training.config import TrainerConfig

PROMPTS = ["a photo of a bag", "a photo of a coat", "a photo of a dress"]


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


def pairs_cfg(teacher, prompts, out, **kw):
    base = dict(teacher=str(teacher), prompts=str(prompts), num=6, steps=2, guidance=3.0, shard_size=2,
                batch_size=4, out=str(out))
    return PairsConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def pairs_dir(tiny_pipeline_dir, prompt_file, tmp_path_factory):
    return generate_pairs(pairs_cfg(tiny_pipeline_dir, prompt_file, tmp_path_factory.mktemp("pairs") / "p"))


def test_pairs_are_the_teachers_ode_endpoints(pairs_dir, tiny_pipeline_dir):
    manifest = json.loads((pairs_dir / "manifest.json").read_text())
    assert manifest["prompts"] == PROMPTS and manifest["solver"] == "dpmsolver" and manifest["guidance"] == 3.0
    data = PairsDataset(pairs_dir)
    batch = data.batch([0, 1, 5])
    assert batch["x0"].shape == batch["x1"].shape == (3, 4, 16, 16)
    assert batch["prompt_id"].tolist() == [0, 1, 2]
    pipe = load_pipeline(tiny_pipeline_dir)
    from studio.diffusion.sampling import sample_latents

    x1 = sample_latents(pipe, [PROMPTS[2]], 2, 3.0, [5], "dpmsolver")  # pair 5: seed 5, prompt 5 mod 3
    assert manifest["store_dtype"] == "float16" and batch["x1"].dtype == torch.float32
    # stored in float16: within its rounding (2^-11 relative) plus float sums of a batch of 2 vs 1
    torch.testing.assert_close(batch["x1"][2:], x1, atol=1e-3, rtol=2 ** -10)
    x0 = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(5))
    assert torch.equal(batch["x0"][2:], x0.half().float())


def test_pairs_default_to_the_teachers_recommended_guidance(tiny_pipeline_dir, prompt_file, tmp_path):
    from studio.models.model_info import write_model_info

    teacher = shutil.copytree(tiny_pipeline_dir, tmp_path / "teacher")
    write_model_info(teacher, "teacher", steps=25, guidance=2.5)
    out = generate_pairs(pairs_cfg(teacher, prompt_file, tmp_path / "p", num=2, steps=1, guidance=None))
    assert json.loads((out / "manifest.json").read_text())["guidance"] == 2.5


def test_float32_pairs_round_trip_exactly(tiny_pipeline_dir, prompt_file, tmp_path):
    out = generate_pairs(pairs_cfg(tiny_pipeline_dir, prompt_file, tmp_path / "p32", num=2, store_dtype="float32"))
    half = PairsDataset(generate_pairs(pairs_cfg(tiny_pipeline_dir, prompt_file, tmp_path / "p16", num=2))).batch([1])
    full = PairsDataset(out).batch([1])
    x0 = torch.randn((1, 4, 16, 16), generator=torch.Generator().manual_seed(1))
    assert torch.equal(full["x0"], x0) and not torch.equal(half["x0"], x0)
    assert torch.equal(half["x1"], full["x1"].half().float())  # the same ODE endpoint, rounded once


def test_pair_generation_resumes_after_the_last_shard_is_deleted(pairs_dir, tmp_path):
    work = tmp_path / "p"
    shutil.copytree(pairs_dir, work)
    before = {p.name: p.stat().st_mtime_ns for p in work.glob("shard-*.safetensors")}
    assert sorted(before) == ["shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors"]
    last = work / "shard-00002.safetensors"
    original = load_file(str(last))
    last.unlink()
    with pytest.raises(StudioError, match="misses 1 shard"):
        PairsDataset(work)
    manifest = json.loads((work / "manifest.json").read_text())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS))
    generate_pairs(pairs_cfg(manifest["teacher"], prompts, work))
    again = load_file(str(last))
    for k in original:
        torch.testing.assert_close(again[k], original[k], atol=1e-6, rtol=0)
    for name, mtime in before.items():
        if name != last.name:
            assert (work / name).stat().st_mtime_ns == mtime  # finished shards are skipped
    assert not list(work.glob("*.tmp"))
    with pytest.raises(StudioError, match="other settings"):
        generate_pairs(pairs_cfg(manifest["teacher"], prompts, work, guidance=5.0))


def test_a_larger_num_extends_a_pairs_set_and_keeps_what_was_made(pairs_dir, tmp_path):
    manifest = json.loads((pairs_dir / "manifest.json").read_text())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS))
    small = generate_pairs(pairs_cfg(manifest["teacher"], prompts, tmp_path / "p", num=3))  # shard 1 is partial
    kept = (small / "shard-00000.safetensors").stat().st_mtime_ns
    assert len(load_file(str(small / "shard-00001.safetensors"))["seed"]) == 1
    generate_pairs(pairs_cfg(manifest["teacher"], prompts, small))  # num 6, as the fixture
    assert (small / "shard-00000.safetensors").stat().st_mtime_ns == kept
    assert json.loads((small / "manifest.json").read_text())["num"] == 6
    grown, whole = PairsDataset(small), PairsDataset(pairs_dir)
    assert len(grown) == 6
    for k, v in whole.batch(list(range(6))).items():
        torch.testing.assert_close(grown.batch(list(range(6)))[k], v, atol=1e-4, rtol=1e-4)
    with pytest.raises(StudioError, match="larger --num"):  # shrinking is not extending
        generate_pairs(pairs_cfg(manifest["teacher"], prompts, small, num=4))


def test_shard_assignment_is_disjoint_and_complete():
    parts = [shards_of_rank(11, 2, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == list(range(6))
    assert all(set(a).isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1:])


def test_two_processes_produce_disjoint_seeds_and_the_same_pairs(pairs_dir, prompt_file, tiny_pipeline_dir, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    out = tmp_path / "two"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "studio", "--", "reflow", "pairs",
           "--teacher", str(tiny_pipeline_dir), "--prompts", str(prompt_file), "--num", "6", "--steps", "2",
           "--guidance", "3.0", "--shard-size", "2", "--batch-size", "4", "--out", str(out)]
    p = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    seeds = [load_file(str(out / f"shard-{j:05d}.safetensors"))["seed"].tolist() for j in range(3)]
    flat = sum(seeds, [])
    assert sorted(flat) == list(range(6)) and len(set(flat)) == 6
    one, two = PairsDataset(pairs_dir).batch(range(6)), PairsDataset(out).batch(range(6))
    for k in one:  # other batch compositions: float sums differ slightly (random teacher, large latents)
        torch.testing.assert_close(two[k], one[k], atol=1e-4, rtol=1e-3)


def test_bad_pairs_inputs_give_one_line_errors(pairs_dir, tiny_pipeline_dir, tmp_path, capsys):
    assert main(["reflow", "train", "--init", str(tiny_pipeline_dir), "--pairs", str(tmp_path)]) == 2
    assert "not a pairs directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the schema makes --init required
        main(["reflow", "distill", "--pairs", str(pairs_dir)])
    assert "required: --init" in capsys.readouterr().err
    bad = tmp_path / "bad"
    shutil.copytree(pairs_dir, bad)
    (bad / "shard-00001.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(StudioError, match="corrupt"):
        PairsDataset(bad)


class FixedPairs:
    """Four synthetic couplings: unit noise to smaller structured latents."""

    prompts = PROMPTS

    def __len__(self):
        return 4

    def batch(self, indices):
        g = torch.Generator().manual_seed(0)
        x0 = torch.randn(4, 4, 16, 16, generator=g)
        x1 = 0.5 * torch.randn(4, 4, 16, 16, generator=g)
        return {"x0": x0, "x1": x1, "prompt_id": torch.tensor([0, 1, 2, 0])}


def _fixed_batch_descends(objective, steps=15):
    unet = objective.pipe.unet
    objective.setup(torch.device("cpu"))
    batch = objective.pairs.batch([0, 1, 2, 3])
    opt = torch.optim.Adam(unet.parameters(), lr=2e-3)
    losses = []
    for _ in range(steps):
        rand = StepRandom(0, 0, 0, 0, 1, 4)  # the same t and dropout draws every step
        loss, _ = objective.loss({"unet": unet}, batch, rand)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_a_few_reflow_steps_on_a_fixed_batch_lower_the_loss(tiny_pipeline_dir):
    losses = _fixed_batch_descends(ReflowObjective(load_pipeline(tiny_pipeline_dir), FixedPairs(), 0.0))
    assert losses[-1] < 0.7 * losses[0], losses


def test_a_few_distillation_steps_on_a_fixed_batch_lower_the_loss(tiny_pipeline_dir):
    losses = _fixed_batch_descends(DistillObjective(load_pipeline(tiny_pipeline_dir), FixedPairs()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_distillation_target_is_the_one_step_sampler(pairs_dir, tiny_pipeline_dir):
    """The trained map x0 + dt v(x0) is exactly what 1-step sampling of the export computes."""
    obj = DistillObjective(load_pipeline(tiny_pipeline_dir), PairsDataset(pairs_dir))
    pipe = obj.pipe
    from studio.diffusion.flow import flow_scheduler
    from studio.diffusion.prompting import encode_prompts
    from studio.diffusion.noise import image_noise as initial_noise
    from studio.diffusion.sampling import sample_latents

    pipe.scheduler = flow_scheduler()
    x0 = initial_noise((4, 16, 16), [3], "cpu", torch.float32)
    cond = encode_prompts(pipe.tokenizer, pipe.text_encoder, [PROMPTS[0]])
    with torch.no_grad():
        torch.testing.assert_close(obj.one_step(pipe.unet, x0, cond),
                                   sample_latents(pipe, [PROMPTS[0]], 1, 1.0, [3]), atol=1e-6, rtol=0)


def _train(steps=2):
    return TrainerConfig(steps=steps, batch_size=2, lr=1e-4, ema_decay=0.0, checkpoint_every=1, tracker="none",
                         progress=False, log_every=1)


@pytest.fixture(scope="module")
def rf_and_student(pairs_dir, tiny_pipeline_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("reflow")
    rf = train_reflow(ReflowTrainConfig(init=str(tiny_pipeline_dir), pairs=str(pairs_dir), out=str(root / "2rf"),
                                        train=_train()))
    student = train_student(DistillConfig(init=str(rf), pairs=str(pairs_dir), out=str(root / "student"),
                                          loss="huber", train=_train()))
    return rf, student


def test_exports_load_in_plain_diffusers_and_match_studio_sampling(rf_and_student):
    rf, student = rf_and_student
    assert read_model_info(rf)["kind"] == "2-rectified-flow" and read_model_info(student)["kind"] == "one-step-student"
    assert json.loads((rf / "config.json").read_text())["caption_dropout"] == 0.1
    for model, steps, guidance in ((rf, 3, 1.5), (student, 1, 0.0)):
        ref = StableDiffusionPipeline.from_pretrained(str(model), safety_checker=None)
        ref.set_progress_bar_config(disable=True)
        gens = [torch.Generator().manual_seed(11 + k) for k in range(2)]
        theirs = ref(PROMPTS[:2], num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                     output_type="np").images
        ours = generate(load_pipeline(model), PROMPTS[:2], steps=steps, guidance=guidance, seed=11)
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_training_changed_the_unet_and_kept_the_rest(rf_and_student, tiny_pipeline_dir):
    rf, _ = rf_and_student
    a, b = load_pipeline(tiny_pipeline_dir), load_pipeline(rf)
    assert any(not torch.equal(p, q) for p, q in zip(a.unet.parameters(), b.unet.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(a.vae.parameters(), b.vae.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(a.text_encoder.parameters(), b.text_encoder.parameters()))


def test_straightness_is_zero_for_straight_and_positive_for_curved_paths():
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    z0, z1 = torch.zeros(2, 3), torch.ones(2, 3)
    assert straightness(z0, z1, t, [z1 - z0] * 4) == pytest.approx(0.0, abs=1e-12)
    # speeds 2, 0, 2, 0 along the same line: mean squared deviation 1 at every step
    vs = [2 * (z1 - z0), 0 * z1, 2 * (z1 - z0), 0 * z1]
    assert straightness(z0, z1, t, vs) == pytest.approx(1.0)


class FieldUNet(torch.nn.Module):
    """A stand-in UNet whose output is a given function of (x, timestep), with the attributes measure() reads."""

    def __init__(self, fn):
        super().__init__()
        self.fn, self.anchor = fn, torch.nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(in_channels=4, sample_size=16)
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def forward(self, x, t, encoder_hidden_states=None):
        return SimpleNamespace(sample=self.fn(x, t.to(torch.float64)).to(x.dtype))


def _with_unet(pipe, unet, scheduler=None):
    return SimpleNamespace(unet=unet, tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder,
                           scheduler=scheduler or pipe.scheduler)


def test_a_teacher_whose_coupling_is_exactly_straight_has_zero_straightness(tiny_pipeline):
    """A VP teacher that always predicts the same data point x1 has the straight path t x1 + (1 - t) eps in the
    flow coordinates measure() uses: S is zero up to float round-off, whatever x1 is."""
    x1 = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2
    abar = tiny_pipeline.scheduler.alphas_cumprod.double().numpy()

    def eps_hat(x, t):  # (x - alpha x1) / sigma at the DDPM timestep t
        a = torch.from_numpy(np.interp(t.numpy(), np.arange(len(abar)), abar)).view(-1, 1, 1, 1)
        return (x.double() - a.sqrt() * x1) / (1 - a).sqrt()

    s = measure(_with_unet(tiny_pipeline, FieldUNet(eps_hat)), PROMPTS, num=3, steps=6)
    assert s == pytest.approx(0.0, abs=1e-9)
    curved = measure(_with_unet(tiny_pipeline, FieldUNet(lambda x, t: x.double() * (t.view(-1, 1, 1, 1) / 999))),
                     PROMPTS, num=3, steps=6)
    assert curved > 1e-3  # and a teacher that does not is not straight


def test_a_flow_with_a_time_dependent_velocity_has_its_analytic_straightness(tiny_pipeline):
    """v(t) = d * tau / 1000 at the UNet's timestep tau: Euler moves by sum dt_i v_i, so the chord is the
    dt-weighted mean velocity and S = d^2 sum_i dt_i (tau_i / 1000 - mean)^2 / T (a closed form on the export grid)."""
    from studio.diffusion.flow import flow_scheduler

    d, steps = 3.0, 5
    flow = _with_unet(tiny_pipeline, FieldUNet(lambda x, t: -d * (t / 1000).view(-1, 1, 1, 1) * torch.ones_like(x)),
                      flow_scheduler())
    sched = flow_scheduler()
    sched.set_timesteps(steps)
    t = 1.0 - sched.sigmas.double().numpy()
    dt, tau = np.diff(t), sched.timesteps.double().numpy() / 1000
    span = t[-1] - t[0]
    mean = (dt * tau).sum() / span
    expected = d**2 * (dt * (tau - mean) ** 2).sum() / span
    assert measure(flow, PROMPTS, num=2, steps=steps) == pytest.approx(expected, rel=1e-6)
    constant = _with_unet(tiny_pipeline, FieldUNet(lambda x, t: torch.full_like(x, 0.7)), flow_scheduler())
    assert measure(constant, PROMPTS, num=2, steps=steps) == pytest.approx(0.0, abs=1e-12)


def test_straightness_command_reports_what_measure_computes(rf_and_student, prompt_file, tmp_path):
    rf, _ = rf_and_student
    out = tmp_path / "s.json"
    assert main(["reflow", "straightness", str(rf), "--prompts", str(prompt_file), "--num", "4", "--steps", "3",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["kind"] == "2-rectified-flow" and (result["num"], result["steps"]) == (4, 3)
    assert result["straightness"] == measure(load_pipeline(rf), PROMPTS, num=4, steps=3)


def test_lpips_without_weights_is_a_clear_error_and_works_with_local_weights(tmp_path, monkeypatch):
    from torchvision.models.vgg import cfgs, make_layers

    from distill.reflow.losses import make_lpips

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    with pytest.raises(StudioError, match="VGG16 ImageNet weights"):
        make_lpips()
    from safetensors.torch import save_file

    torch.manual_seed(0)
    features = make_layers(cfgs["D"])
    path = tmp_path / "vgg16.safetensors"
    save_file({f"features.{k}": v for k, v in features.state_dict().items()}, str(path))
    net = make_lpips(str(path))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert net(x, x).abs().max().item() < 1e-6
    assert net(x, x.flip(-1)).min().item() > 0
    bad = tmp_path / "bad.safetensors"
    save_file({"foo": torch.zeros(1)}, str(bad))
    with pytest.raises(StudioError, match="not a torchvision VGG16"):
        make_lpips(str(bad))


def test_sample_uses_the_models_recommended_settings(rf_and_student, tmp_path):
    from PIL import Image

    _, student = rf_and_student
    out = tmp_path / "s.png"
    assert main(["sample", str(student), "--prompt", PROMPTS[0], "--num", "2", "--out", str(out)]) == 0
    params = json.loads(Image.open(out).info["parameters"])
    assert (params["steps"], params["guidance"]) == (1, 1.0)
    assert main(["sample", str(student), "--prompt", PROMPTS[0], "--num", "1", "--steps", "2", "--guidance", "0",
                 "--out", str(out)]) == 0
    params = json.loads(Image.open(out).info["parameters"])
    assert (params["steps"], params["guidance"]) == (2, 0.0)
