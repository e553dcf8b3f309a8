"""The loop under real processes: SIGKILL + resume, SIGTERM, and torchrun with 2 processes."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import subprocess_env

WEIGHTS = ["unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
           "vae/diffusion_pytorch_model.safetensors"]


def teacher_cmd(out, data_dir, *extra, launcher=(sys.executable,)):
    return [*launcher, "-m", "studio", "teacher", "train", "--data-dir", str(data_dir), "--out", str(out),
            "--vae-steps", "4", "--vae-batch-size", "8", "--steps", "30", "--batch-size", "8",
            "--checkpoint-every", "2", "--warmup-steps", "2", "--ema-decay", "0.9", "--tracker", "none",
            "--no-progress", "--log-every", "1", *extra]


def run(cmd, timeout=600):
    p = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


def wait_for(path: Path, proc, timeout=300):
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, "run ended before the checkpoint appeared"
        assert time.time() - t0 < timeout
        time.sleep(0.02)


def assert_same_weights(a: Path, b: Path, atol=0.0):
    for rel in WEIGHTS:
        wa, wb = load_file(str(a / rel)), load_file(str(b / rel))
        assert wa.keys() == wb.keys()
        for k in wa:
            if atol == 0.0:
                assert torch.equal(wa[k], wb[k]), f"{rel}:{k} differs"
            else:
                assert torch.allclose(wa[k], wb[k], atol=atol, rtol=0), f"{rel}:{k} differs by " \
                    f"{(wa[k] - wb[k]).abs().max().item()}"


@pytest.fixture(scope="module")
def uninterrupted(fake_fmnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    run(teacher_cmd(out, fake_fmnist))
    return out


def test_sigkill_then_resume_gives_identical_weights(uninterrupted, fake_fmnist, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(teacher_cmd(out, fake_fmnist), env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(out / "stages" / "unet" / "checkpoints" / "step-00000006", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model_index.json").exists(), "the run finished before it was killed"
    p = run(teacher_cmd(out, fake_fmnist, "--resume", "latest"))
    assert "resumed from" in p.stdout
    assert_same_weights(uninterrupted, out)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(uninterrupted, fake_fmnist, tmp_path):
    out = tmp_path / "termed"
    proc = subprocess.Popen(teacher_cmd(out, fake_fmnist, "--checkpoint-every", "1000"), env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(out / "stages" / "vae" / "vae" / "config.json", proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    assert "SIGTERM: saved" in stdout
    ckpts = list((out / "stages" / "unet" / "checkpoints").glob("step-*"))
    assert len(ckpts) == 1 and not ckpts[0].name.endswith(".tmp")
    run(teacher_cmd(out, fake_fmnist, "--checkpoint-every", "1000", "--resume", "latest"))
    assert_same_weights(uninterrupted, out)


def test_two_processes_match_one_process_with_double_batch(fake_fmnist, tmp_path):
    """DDP over gloo: same data, same noise, averaged gradients -> the same weights.

    Adam's first steps move every weight by about +-lr whatever the gradient's size, so
    float-reduction noise in a near-zero gradient would flip whole steps; a large
    ``adam_eps`` makes the update proportional to the gradient, which is what is compared.
    """
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    common = ["--steps", "6", "--vae-steps", "3", "--ema-decay", "0", "--adam-eps", "1.0"]
    run(teacher_cmd(tmp_path / "one", fake_fmnist, *common))  # batch 8 in one process
    run(teacher_cmd(tmp_path / "two", fake_fmnist, *common, "--batch-size", "4", "--vae-batch-size", "4",
                    launcher=(torchrun, "--standalone", "--nproc_per_node", "2")))
    assert_same_weights(tmp_path / "one", tmp_path / "two", atol=1e-5)
