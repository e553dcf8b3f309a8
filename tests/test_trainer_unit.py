import json
import shutil

import pytest
import torch

from studio.training.checkpoints import list_checkpoints
from studio.training.ema import EMA
from studio.training.config import TrainerConfig, lr_factor
from studio.training.loop import NonFiniteLoss, train
from toy_method import ToyMethod


def cfg(**kw):
    base = dict(steps=20, batch_size=8, lr=1e-2, ema_decay=0.0, checkpoint_every=5, log_every=5,
                tracker="none", progress=False, max_grad_norm=0.0)
    base.update(kw)
    return TrainerConfig(**base)


def _weights(modules):
    return torch.cat([p.detach().flatten() for m in modules.values() for p in m.parameters()])


def test_training_lowers_the_loss(tmp_path):
    m = ToyMethod()
    data = m.dataset().batch(range(64))
    before = ((m.b(m.a(data["x"])) - data["y"]) ** 2).mean().item()
    train(m, cfg(steps=60), tmp_path)
    after = ((m.b(m.a(data["x"])) - data["y"]) ** 2).mean().item()
    assert after < 0.3 * before


def test_gradient_accumulation_equals_the_big_batch(tmp_path):
    r1 = train(ToyMethod(), cfg(batch_size=16), tmp_path / "big")
    r2 = train(ToyMethod(), cfg(batch_size=8, grad_accum=2), tmp_path / "acc")
    assert torch.allclose(_weights(r1.modules), _weights(r2.modules), atol=1e-6)


def test_checkpoint_retention_and_resume_is_exact(tmp_path):
    full = train(ToyMethod(noise=0.1, dropout=0.2), cfg(ema_decay=0.9, lr_schedule="cosine", warmup_steps=3,
                                                       max_grad_norm=1.0), tmp_path / "full")
    assert len(list_checkpoints(tmp_path / "full")) == 3  # steps 10, 15, 20 kept of 5..20
    part = tmp_path / "part"
    train(ToyMethod(noise=0.1, dropout=0.2), cfg(steps=20, ema_decay=0.9, lr_schedule="cosine", warmup_steps=3,
                                                 max_grad_norm=1.0, checkpoint_every=5), part)
    # roll back to step 10 and resume from there: identical end state (weights and EMA)
    for p in list_checkpoints(part)[1:]:
        shutil.rmtree(p)
    assert list_checkpoints(part)[-1].name == "step-00000010"
    resumed = train(ToyMethod(noise=0.1, dropout=0.2), cfg(ema_decay=0.9, lr_schedule="cosine", warmup_steps=3,
                                                          max_grad_norm=1.0, resume="latest"), part)
    assert torch.equal(_weights(full.modules), _weights(resumed.modules))


def test_training_seconds_add_up_over_resumed_segments(tmp_path):
    """The time a checkpoint records is carried into the resumed run (a resumed run used to report
    only its last segment)."""
    first = train(ToyMethod(), cfg(steps=10), tmp_path)
    ckpt = list_checkpoints(tmp_path)[-1]
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert 0 < state["seconds"] <= first.seconds
    state["seconds"] = 1000.0  # pretend the first segment took 1,000 s
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    resumed = train(ToyMethod(), cfg(steps=20, resume="latest"), tmp_path)
    assert resumed.step == 20 and resumed.seconds > 1000.0
    last = json.loads((list_checkpoints(tmp_path)[-1] / "trainer_state.json").read_text())
    assert last["step"] == 20 and last["seconds"] > 1000.0


def test_nan_loss_stops_with_one_line_error_and_keeps_checkpoints(tmp_path):
    with pytest.raises(NonFiniteLoss) as e:
        train(ToyMethod(nan_at_step=8), cfg(checkpoint_every=3), tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "step 8" in msg and "step-00000006" in msg
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000003", "step-00000006"]
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_lr_schedule_endpoints():
    c = TrainerConfig(steps=100, warmup_steps=10, lr_schedule="cosine")
    assert lr_factor(c, 0) == pytest.approx(0.1) and lr_factor(c, 9) == pytest.approx(1.0)
    assert lr_factor(c, 100) == pytest.approx(0.0, abs=1e-9)
    assert lr_factor(TrainerConfig(steps=100, lr_schedule="linear"), 50) == pytest.approx(0.5)


def test_ema_update_formula():
    lin = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    ema = EMA({"m": lin}, decay=0.5)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema.update({"m": lin})  # warm-up caps decay at (1+1)/(10+1) = 2/11
    assert ema.shadow["m.weight"].item() == pytest.approx(1 - 2 / 11)
    state = ema.state_dict()
    ema2 = EMA({"m": lin}, decay=0.5)
    ema2.load_state_dict(state)
    assert ema2.num_updates == 1 and torch.equal(ema2.shadow["m.weight"], ema.shadow["m.weight"])
