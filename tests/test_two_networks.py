"""The loop with several networks: alternating optimizer groups, per-group EMA, exact resume, processes."""

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
from studio.training.checkpoints import list_checkpoints
from studio.training.config import TrainerConfig
from studio.training.loop import train
from two_networks import TwoNetworks, weights

SCRIPT = str(Path(__file__).resolve().parent / "two_networks.py")


def _cfg(**kw):
    base = dict(steps=9, batch_size=8, lr=1e-2, ema_decay=0.0, checkpoint_every=3, max_grad_norm=0.0,
                tracker="none", progress=False)
    return TrainerConfig(**{**base, **kw})


def test_groups_step_in_the_order_and_ratio_the_method_gives(tmp_path):
    method = TwoNetworks()
    before = weights(method.trainable())
    result = train(method, _cfg(), tmp_path)
    assert method.seen == ["critic", "critic", "critic", "generator"] * 3  # 2:1 per three steps, critic first
    after = weights(result.modules)
    assert all(not torch.equal(before[k], after[k]) for k in before)  # both networks moved


class DetachedCritic(TwoNetworks):
    """The same method, but the generator's loss cannot reach the critic's weights at all."""

    def group_loss(self, group, modules, batch, rand):
        if group == "critic":
            return super().group_loss(group, modules, batch, rand)
        self.seen.append(group)
        critic = modules["critic"]
        frozen = {k: v.detach() for k, v in critic.named_parameters()}
        return -torch.func.functional_call(critic, frozen, (modules["generator"](rand.randn(4)),)).mean(), {}


def test_each_group_is_stepped_only_by_its_own_loss(tmp_path):
    """The generator's loss back-propagates into the critic too; the loop clears those gradients before the
    critic's own update, so the weights equal those of a method where they never arise."""
    a = weights(train(TwoNetworks(), _cfg(max_grad_norm=1.0), tmp_path / "a").modules)
    b = weights(train(DetachedCritic(), _cfg(max_grad_norm=1.0), tmp_path / "b").modules)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_per_group_ema_and_checkpoints(tmp_path):
    result = train(TwoNetworks(), _cfg(ema_decay=0.5), tmp_path)
    ckpt = list_checkpoints(tmp_path)[-1]
    ema = load_file(str(ckpt / "ema.safetensors"))
    # only the generator's group keeps an EMA (the critic's says ema=False), updated on its 3 steps
    assert set(ema) == {"__num_updates__"} | {k for k in weights(result.modules) if k.startswith("generator.")}
    assert int(ema["__num_updates__"]) == 3
    assert sorted(p.name for p in ckpt.iterdir() if p.name.startswith("optimizer")) == ["optimizer.bin",
                                                                                         "optimizer_1.bin"]
    final = weights(result.modules)
    assert all(torch.equal(final[k], v) for k, v in ema.items() if k != "__num_updates__")  # EMA weights exported


def _run(*args, launcher=(sys.executable,)):
    p = subprocess.run([*launcher, SCRIPT, *map(str, args)], env=subprocess_env(), capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


def _same(a: Path, b: Path, atol=0.0):
    wa, wb = load_file(str(a / "final.safetensors")), load_file(str(b / "final.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        if atol == 0.0:
            assert torch.equal(wa[k], wb[k]), k
        else:
            torch.testing.assert_close(wa[k], wb[k], atol=atol, rtol=0)


def test_sigkill_then_resume_gives_bit_equal_weights(tmp_path):
    _run(tmp_path / "full", "--steps", 30, "--dropout", 0.3)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, SCRIPT, str(out), "--steps", "30", "--dropout", "0.3", "--slow", "0.2"],
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = out / "checkpoints" / "step-00000008"  # mid-cycle: the next step is a generator step
    while not target.exists():
        assert proc.poll() is None, "run ended before the checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "final.safetensors").exists(), "the run finished before it was killed"
    _run(out, "--steps", 30, "--dropout", 0.3, "--resume", "latest")
    _same(tmp_path / "full", out)


def test_two_processes_match_one_process_with_double_batch(tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not found")
    _run(tmp_path / "one", "--steps", 9, "--batch-size", 8)
    _run(tmp_path / "two", "--steps", 9, "--batch-size", 4, launcher=(torchrun, "--standalone", "--nproc_per_node", "2"))
    _same(tmp_path / "one", tmp_path / "two", atol=1e-5)
