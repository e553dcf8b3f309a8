"""The autoencoder's adversarial term: adaptive weight, hinge loss, the discriminator's switch-on step."""

import pytest
import torch

from studio.data import load_dataset
from studio.models.presets import build_pipeline, tokenizer_corpus
from studio.teacher.adversarial import PatchDiscriminator, adaptive_weight, hinge_d_loss
from studio.teacher.vae_stage import VAEStage
from studio.training.config import TrainerConfig
from studio.training.loop import train
from studio.training.method import frozen_call


def test_adaptive_weight_is_the_ratio_of_gradient_norms_at_the_last_layer():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    a, b = torch.tensor([3.0, 0.0, 4.0]), torch.tensor([0.0, 1.0, 0.0])  # |a| = 5, |b| = 1
    rec, g = (a * w).sum() + 7.0, (b * w ** 2).sum()  # grad of g at w: 2 b w = (0, -4, 0), norm 4
    assert adaptive_weight(rec, g, w, disc_weight=0.5).item() == pytest.approx(0.5 * 5.0 / (4.0 + 1e-4))
    # a generator term that does not depend on the layer: the ratio is clamped at 1e4
    flat = (w * 0.0).sum()
    assert adaptive_weight(rec, flat, w, disc_weight=1.0).item() == pytest.approx(1e4)
    assert not adaptive_weight(rec, g, w).requires_grad
    assert adaptive_weight(rec, flat, w, disc_weight=0.5, max_weight=3.0).item() == pytest.approx(1.5)


def test_hinge_loss_of_the_discriminator():
    ones = torch.ones(2, 1, 2, 2)
    assert hinge_d_loss(2 * ones, -2 * ones).item() == 0.0  # both beyond the margin
    assert hinge_d_loss(0 * ones, 0 * ones).item() == 1.0
    assert hinge_d_loss(-ones, ones).item() == 2.0  # fooled both ways: 0.5 (2 + 2)


def test_patch_discriminator_shape_and_frozen_call_reaches_inputs_only():
    d = PatchDiscriminator(3, 8, 3)
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    logits = frozen_call(d, x)
    assert logits.shape == (2, 1, 2, 2)  # 32 -> 16 -> 8 -> 4, then two stride-1 4x4 convolutions
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in d.parameters())


class Recording(VAEStage):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.seen = []

    def group_loss(self, group, modules, batch, rand):
        loss, logs = super().group_loss(group, modules, batch, rand)
        self.seen.append((self.step, group, "g_loss" in logs))
        return loss, logs


def test_the_discriminator_switches_on_at_disc_start(fake_fmnist, tmp_path):
    data = load_dataset("fashion-mnist", data_dir=str(fake_fmnist), resolution=32, limit=32)
    pipe = build_pipeline("tiny", tokenizer_corpus(data.class_names), seed=0)
    stage = Recording(pipe.vae, data, 1e-6, disc_weight=0.5, disc_start=2, disc_channels=8)
    disc0 = {k: v.detach().clone() for k, v in stage.disc.named_parameters()}  # not BatchNorm's running statistics
    cfg = TrainerConfig(steps=2, batch_size=4, lr=1e-3, ema_decay=0.0, tracker="none", progress=False,
                        checkpoint_every=10)
    result = train(stage, cfg, tmp_path)
    assert stage.seen == [(0, "vae", False), (1, "vae", False)]
    assert all(torch.equal(disc0[k], v) for k, v in result.modules["disc"].named_parameters())
    result = train(stage, TrainerConfig(**{**cfg.__dict__, "steps": 4, "resume": "latest"}), tmp_path)
    assert stage.seen[2:] == [(2, "vae", True), (2, "disc", False), (3, "vae", True), (3, "disc", False)]
    assert any(not torch.equal(disc0[k], v) for k, v in result.modules["disc"].named_parameters())


def test_without_the_adversarial_weight_there_is_one_network(fake_fmnist, tmp_path):
    data = load_dataset("fashion-mnist", data_dir=str(fake_fmnist), resolution=32, limit=8)
    pipe = build_pipeline("tiny", tokenizer_corpus(data.class_names), seed=0)
    stage = VAEStage(pipe.vae, data, 1e-6, disc_weight=0.0, disc_start=0)
    assert list(stage.trainable()) == ["vae"] and stage.updates(5) == ["vae"]
    cfg = TrainerConfig(steps=1, batch_size=4, ema_decay=0.0, tracker="none", progress=False)
    assert list(train(stage, cfg, tmp_path).modules) == ["vae"]
