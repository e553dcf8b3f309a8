"""The memory levers (studio.models.levers, --optimizer adamw8bit, --ema-device) on the tiny preset:
equal losses and gradients with checkpointing, LoRA exports that plain diffusers reproduces, adapters
that compose, and exact resume after SIGKILL and 1-vs-2-process equivalence with the levers on."""

import copy
import os
import shutil
import signal
import subprocess
import sys
import typing
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import CLIPTextConfig, CLIPTextModel

from conftest import subprocess_env
from distill.reflow.commands import train_reflow, train_student
from distill.reflow.config import DistillConfig, PairsConfig, ReflowTrainConfig
from distill.reflow.objective import ReflowObjective
from distill.reflow.pairs import PairsDataset, generate_pairs
from studio import StudioError
from studio.diffusion.prompting import PromptCache, encode_prompts
from studio.diffusion.sampling import generate
from studio.models.backbone import load_pipeline
from studio.models.levers import MemoryLevers
from studio.models.lora import LORA_DIR
from studio.models.presets import PRESETS, PresetName, component_configs
from studio.training import loop
from studio.training.config import TrainerConfig
from studio.training.randomness import StepRandom

PROMPTS = ["a photo of a bag", "a photo of a coat", "a photo of a dress"]
LORA = MemoryLevers(lora_rank=4, lora_alpha=8.0, lora_export="both")


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


def pairs_args(teacher, prompts, out):
    return ["--teacher", str(teacher), "--prompts", str(prompts), "--num", "8", "--steps", "2", "--guidance", "3.0",
            "--shard-size", "2", "--batch-size", "4", "--out", str(out)]


@pytest.fixture(scope="module")
def pairs(tiny_pipeline_dir, prompt_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs") / "p"
    return generate_pairs(PairsConfig(teacher=str(tiny_pipeline_dir), prompts=str(prompt_file), num=8, steps=2,
                                      guidance=3.0, shard_size=2, batch_size=4, out=str(out)))


def _train(steps=2, lr=1e-2):
    return TrainerConfig(steps=steps, batch_size=2, lr=lr, ema_decay=0.0, checkpoint_every=1, tracker="none",
                         progress=False, log_every=1)


def _loss_and_grads(unet, pipe, pairs_dir):
    pairs = PairsDataset(pairs_dir)
    obj = ReflowObjective(pipe, pairs, caption_dropout=0.5)
    obj.setup(torch.device("cpu"))
    unet.train()
    batch = pairs.batch([0, 3, 5])
    loss, _ = obj.loss({"unet": unet}, batch, StepRandom(0, 4, 0, 0, 1, 3, torch.device("cpu")))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in unet.named_parameters()}


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_pipeline_dir, pairs):
    pipe = load_pipeline(tiny_pipeline_dir)
    plain, ckpt = copy.deepcopy(pipe.unet), copy.deepcopy(pipe.unet)
    ckpt.enable_gradient_checkpointing()
    loss_a, grads_a = _loss_and_grads(plain, pipe, pairs)
    loss_b, grads_b = _loss_and_grads(ckpt, pipe, pairs)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=0)
    for n, g in grads_a.items():
        torch.testing.assert_close(grads_b[n], g, rtol=1e-6, atol=1e-6 * g.abs().max().item())
    # the VAE decoder (--loss lpips) too: the same gradient with respect to the decoded latents
    vae, vae_ckpt = copy.deepcopy(pipe.vae), copy.deepcopy(pipe.vae)
    vae_ckpt.enable_gradient_checkpointing()
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    grads = []
    for v in (vae, vae_ckpt):
        x = z.clone().requires_grad_(True)
        v.decode(x).sample.square().mean().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-9)


@pytest.fixture(scope="module")
def lora_runs(tiny_pipeline_dir, pairs, tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    rf = train_reflow(ReflowTrainConfig(init=str(tiny_pipeline_dir), pairs=str(pairs), out=str(root / "2rf"),
                                        memory=LORA, train=_train()))
    student = train_student(DistillConfig(init=str(rf), pairs=str(pairs), out=str(root / "student"), loss="l2",
                                          memory=LORA, train=_train()))
    return rf, student


def _plain(path):
    pipe = StableDiffusionPipeline.from_pretrained(str(path), safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _images(pipe, steps):
    gens = [torch.Generator().manual_seed(11 + k) for k in range(2)]
    return pipe(PROMPTS[:2], num_inference_steps=steps, guidance_scale=1.0, generator=gens, output_type="np").images


def test_lora_trains_and_checkpoints_only_the_adapter(lora_runs, tiny_pipeline_dir):
    rf, _ = lora_runs
    with safe_open(str(rf / "train" / "checkpoints" / "step-00000002" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(".lora_A." in k or ".lora_B." in k for k in keys)
    base, merged = load_pipeline(tiny_pipeline_dir).unet.state_dict(), load_pipeline(rf).unet.state_dict()
    assert base.keys() == merged.keys()  # a plain UNet again: no peft layers left
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed and all(".attn" in k and (".to_" in k) for k in changed)  # only the adapted layers moved


def test_merged_lora_export_equals_studio_sample_in_plain_diffusers(lora_runs):
    for model, steps in zip(lora_runs, (3, 1)):
        ours = generate(load_pipeline(model), PROMPTS[:2], steps=steps, guidance=1.0, seed=11)
        np.testing.assert_allclose(ours, _images(_plain(model), steps), atol=1e-5)


def _base_with_flow_scheduler(base_dir, export):
    base = _plain(base_dir)
    base.scheduler = DPMSolverMultistepScheduler.from_pretrained(str(export / "scheduler"))
    return base


def test_adapter_only_export_loaded_on_the_base_equals_the_merged_export(lora_runs, tiny_pipeline_dir):
    rf, student = lora_runs
    base = _base_with_flow_scheduler(tiny_pipeline_dir, rf)
    base.load_lora_weights(str(rf / LORA_DIR))
    np.testing.assert_allclose(_images(base, 3), _images(_plain(rf), 3), atol=1e-5)
    # adapters compose additively: the 2-RF's adapter and the student's (trained on the merged 2-RF)
    both = _base_with_flow_scheduler(tiny_pipeline_dir, student)
    both.load_lora_weights(str(rf / LORA_DIR), adapter_name="rf")
    both.load_lora_weights(str(student / LORA_DIR), adapter_name="student")
    both.set_adapters(["rf", "student"], [1.0, 1.0])
    np.testing.assert_allclose(_images(both, 1), _images(_plain(student), 1), atol=1e-5)


def test_lora_targets_that_match_nothing_are_refused(tiny_pipeline_dir, pairs, tmp_path):
    with pytest.raises(StudioError, match="match no layer"):
        train_reflow(ReflowTrainConfig(init=str(tiny_pipeline_dir), pairs=str(pairs), out=str(tmp_path / "x"),
                                       memory=replace(LORA, lora_targets="no_such_layer"), train=_train()))


def test_frozen_modules_in_bf16_train_and_export_their_fp32_weights(tiny_pipeline_dir, pairs, tmp_path):
    levers = MemoryLevers(frozen_dtype="bfloat16")
    rf = train_reflow(ReflowTrainConfig(init=str(tiny_pipeline_dir), pairs=str(pairs), out=str(tmp_path / "rf"),
                                        memory=levers, train=_train()))
    a, b = load_pipeline(tiny_pipeline_dir), load_pipeline(rf)
    for name in ("text_encoder", "vae"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert all(sb[k].dtype == torch.float32 and torch.equal(sa[k], sb[k]) for k in sa)


def test_the_prompt_cache_equals_encoding_and_keeps_at_most_its_limit(tiny_pipeline):
    enc = tiny_pipeline.text_encoder.eval()
    cache = PromptCache(tiny_pipeline.tokenizer, enc, limit=2)
    prompts = PROMPTS + ["", PROMPTS[0]]
    with torch.no_grad():
        direct = encode_prompts(tiny_pipeline.tokenizer, enc, prompts)
    torch.testing.assert_close(cache(prompts, "cpu"), direct, atol=1e-6, rtol=1e-6)
    assert list(cache.kept) == PROMPTS[:2]
    torch.testing.assert_close(cache(prompts[::-1], "cpu"), direct.flip(0), atol=1e-6, rtol=1e-6)


def test_8bit_adamw_without_a_working_bitsandbytes_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails as if not installed
    with pytest.raises(StudioError, match="adamw8bit needs bitsandbytes.*--optimizer adamw"):
        loop.adamw8bit(torch.device("cpu"))


def test_the_sd15_preset_is_stable_diffusion_1_5s_architecture():
    assert set(typing.get_args(PresetName)) == set(PRESETS)
    unet_cfg, vae_cfg = component_configs("sd15")
    with torch.device("meta"):  # no memory: shapes only
        unet, vae = UNet2DConditionModel(**unet_cfg), AutoencoderKL(**vae_cfg)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, **PRESETS["sd15"].text))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # the parameter counts of SD 1.5's released unet, vae and text_encoder
    assert (count(unet), count(vae), count(text)) == (859_520_964, 83_653_863, 123_060_480)
    assert unet.config.sample_size == 64 and vae.config.scaling_factor == 0.18215
    assert component_configs("sd15", 256)[0]["sample_size"] == 32
    with pytest.raises(StudioError, match="multiple of 64"):
        component_configs("sd15", 500)


# -- under real processes: SIGKILL + resume, and 1 vs 2 processes -----------------------------------------

LEVER_SETS = {
    "lora+checkpointing+bf16-frozen+cpu-ema": ["--lora-rank", "4", "--gradient-checkpointing",
                                               "--frozen-dtype", "bfloat16", "--ema-device", "cpu"],
    "full+checkpointing+adamw8bit+cpu-ema": ["--gradient-checkpointing", "--optimizer", "adamw8bit",
                                             "--ema-device", "cpu"],
}


def distill_cmd(init, pairs_dir, out, levers, *extra, launcher=(sys.executable,)):
    return [*launcher, "-m", "studio", "--", "reflow", "distill", "--init", str(init), "--pairs", str(pairs_dir),
            "--out", str(out), "--steps", "10", "--batch-size", "4", "--lr", "1e-3", "--warmup-steps", "2",
            "--checkpoint-every", "2", "--ema-decay", "0.9", "--tracker", "none", "--no-progress", "--log-every", "1",
            *levers, *extra]


def run(cmd):
    p = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


def unet_weights(run_dir):
    return load_file(str(run_dir / "unet" / "diffusion_pytorch_model.safetensors"))


@pytest.mark.parametrize("name", LEVER_SETS)
def test_levers_resume_exactly_after_sigkill(name, tiny_pipeline_dir, pairs, tmp_path):
    levers = LEVER_SETS[name]
    run(distill_cmd(tiny_pipeline_dir, pairs, tmp_path / "full", levers))
    out = tmp_path / "killed"
    proc = subprocess.Popen(distill_cmd(tiny_pipeline_dir, pairs, out, levers), env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "train" / "checkpoints" / "step-00000004"
    while not ckpt.exists():
        assert proc.poll() is None, "the run ended before its checkpoint appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model_index.json").exists(), "the run finished before it was killed"
    assert "resumed from" in run(distill_cmd(tiny_pipeline_dir, pairs, out, levers, "--resume", "latest")).stdout
    a, b = unet_weights(tmp_path / "full"), unet_weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", LEVER_SETS)
def test_levers_on_pairs_of_two_processes_give_the_student_of_one(name, tiny_pipeline_dir, prompt_file, pairs,
                                                                  tmp_path):
    """Pairs made by 2 processes, then the student trained by 2 processes at half the batch, equal the
    1-process pairs and student (a large Adam eps makes updates proportional to the gradients; see
    tests/test_trainer_processes.py)."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    two = (torchrun, "--standalone", "--nproc_per_node", "2")
    pairs2 = tmp_path / "pairs2"
    run([*two, "-m", "studio", "--", "reflow", "pairs", *pairs_args(tiny_pipeline_dir, prompt_file, pairs2)])
    p1, p2 = PairsDataset(pairs).batch(list(range(8))), PairsDataset(pairs2).batch(list(range(8)))
    for k in p1:  # other batch compositions: float sums differ slightly (tests/test_reflow.py), then fp16
        torch.testing.assert_close(p2[k], p1[k], atol=1e-4, rtol=2e-3)
    common = [*LEVER_SETS[name], "--adam-eps", "1.0", "--steps", "4", "--ema-decay", "0"]
    run(distill_cmd(tiny_pipeline_dir, pairs, tmp_path / "one", common))
    run(distill_cmd(tiny_pipeline_dir, pairs2, tmp_path / "two", common, "--batch-size", "2", launcher=two))
    a, b = unet_weights(tmp_path / "one"), unet_weights(tmp_path / "two")
    assert any(not torch.equal(a[k], w) for k, w in load_pipeline(tiny_pipeline_dir).unet.state_dict().items())
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=0)


def test_teacher_unet_stage_takes_the_levers(tiny_pipeline_dir, fake_fmnist, tmp_path):
    from studio.teacher.commands import train_teacher
    from studio.teacher.config import TeacherConfig

    out = train_teacher(TeacherConfig(data_dir=str(fake_fmnist), init=str(tiny_pipeline_dir), out=str(tmp_path / "t"),
                                      train_text_encoder=False, train=_train(),
                                      memory=replace(LORA, gradient_checkpointing=True, frozen_dtype="bfloat16")))
    a, b = load_pipeline(tiny_pipeline_dir), load_pipeline(out)
    base, tuned = a.unet.state_dict(), b.unet.state_dict()
    assert base.keys() == tuned.keys() and any(not torch.equal(base[k], tuned[k]) for k in base)
    assert all(torch.equal(base[k], tuned[k]) for k in base if ".to_" not in k)  # only the adapted layers moved
    for name in ("text_encoder", "vae"):  # frozen, held in bf16 while training, exported as they were
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert (out / LORA_DIR / "pytorch_lora_weights.safetensors").is_file()
