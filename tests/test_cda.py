"""CDA / SRe2L: BN matching, curricula, augmentations, recovery resume, soft-label evaluation."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from distill.cda.augment import mix, random_resized_crop
from distill.cda.bn_matching import BNStatsLoss
from studio.models.classifier import build_classifier, load_classifier, save_classifier
from distill.cda.config import EvalConfig, RecoverConfig, SqueezeConfig
from distill.cda.curriculum import SCHEDULES, crop_scale_lower_bound
from distill.cda.commands import random_subset, run_eval, run_squeeze
from distill.cda.objective import Recovery, soft_label_kl
from distill.cda.recover import load_distilled, run_recover
from studio.data.imagefolder import folder_name

from studio import StudioError
from studio.data import FASHION_MNIST_CLASSES, load_image_folder
from studio.training.config import TrainerConfig

CLASSES = list(FASHION_MNIST_CLASSES)


def _two_bn_net():
    return nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)).eval()


def test_bn_loss_is_zero_when_batch_statistics_equal_running_statistics():
    torch.manual_seed(0)
    net = _two_bn_net()
    x = torch.randn(6, 3, 8, 8) * 2 + 0.5
    with torch.no_grad():  # set every running statistic to the batch statistic of its layer input
        net[0].running_mean.copy_(x.mean((0, 2, 3)))
        net[0].running_var.copy_(x.var((0, 2, 3), unbiased=False))
        h = net[1](net[0](x))
        net[2].running_mean.copy_(h.mean((0, 2, 3)))
        net[2].running_var.copy_(h.var((0, 2, 3), unbiased=False))
    loss = BNStatsLoss(net, first_multiplier=10.0)
    net(x)
    assert float(loss.value().detach()) < 1e-5


def test_bn_loss_is_l2_norms_with_the_first_layer_multiplier():
    torch.manual_seed(0)
    net = _two_bn_net()
    x = torch.randn(5, 3, 8, 8)
    loss = BNStatsLoss(net, first_multiplier=10.0)
    net(x)
    h = net[1](net[0](x)).detach()
    terms = []
    for inp, bn in ((x, net[0]), (h, net[2])):
        m = inp.permute(1, 0, 2, 3).reshape(inp.shape[1], -1)  # SRe2L's formulation
        terms.append(float(((m.mean(1) - bn.running_mean) ** 2).sum().sqrt()
                           + ((m.var(1, unbiased=False) - bn.running_var) ** 2).sum().sqrt()))
    assert float(loss.value().detach()) == pytest.approx(10 * terms[0] + terms[1], rel=1e-5)
    assert loss.per_layer() == pytest.approx(terms, rel=1e-5)


@pytest.mark.parametrize("schedule", ["step", "linear", "cosine"])
@pytest.mark.parametrize("milestone", [1.0, 0.5])
def test_curricula_hit_their_endpoints_and_are_monotone(schedule, milestone):
    T = 200
    a = [crop_scale_lower_bound(schedule, t, T, milestone) for t in range(T)]
    assert a[0] == 1.0
    assert all(v == 0.08 for v in a[math.ceil(milestone * T):])
    assert all(x >= y for x, y in zip(a, a[1:]))
    assert all(0.08 <= v <= 1.0 for v in a)


def test_linear_and_cosine_midpoints_and_sre2l_has_no_curriculum():
    assert crop_scale_lower_bound("linear", 50, 100) == pytest.approx(0.08 + 0.92 * 0.5)
    assert crop_scale_lower_bound("cosine", 50, 100) == pytest.approx(0.08 + 0.92 * 0.5)
    assert crop_scale_lower_bound("cosine", 25, 100) == pytest.approx(0.08 + 0.92 * (1 + math.cos(math.pi / 4)) / 2)
    assert {crop_scale_lower_bound("none", t, 100) for t in range(100)} == {0.08}
    assert "none" in SCHEDULES
    with pytest.raises(StudioError, match="curriculum"):
        crop_scale_lower_bound("exp", 0, 10)


def test_mixup_is_convex_and_cutmix_pastes_a_box_of_partners():
    torch.manual_seed(0)
    x = torch.stack([torch.full((3, 16, 16), float(k)) for k in range(4)])
    m = mix(x, "mixup")
    own = x.view(4, -1)[:, 0]
    assert torch.all(m.view(4, -1).min(1).values >= 0) and torch.all(m.view(4, -1).max(1).values <= 3)
    assert torch.allclose(m.view(4, -1), m.view(4, -1)[:, :1].expand(4, 768))  # one lambda per image, constant
    pasted = 0
    for seed in range(5):
        torch.manual_seed(seed)
        c = mix(x, "cutmix")
        for k in range(4):
            foreign = c[k] != own[k]
            pasted += int(foreign.any())
            if foreign.any():  # one axis-aligned box, filled from a single partner image
                rows, cols = foreign.any(2).any(0), foreign.any(1).any(0)
                assert int(foreign[0].sum()) == int(rows.sum()) * int(cols.sum())
                assert c[k][foreign].unique().numel() == 1
    assert pasted > 0
    assert mix(x, "none") is x


def test_random_resized_crop_of_the_whole_area_keeps_the_image():
    x = torch.randn(2, 3, 16, 16)
    torch.manual_seed(0)
    y = random_resized_crop(x, 16, (1.0, 1.0))
    assert torch.allclose(y, x, atol=1e-5)


def test_soft_label_kl_matches_an_independent_formula():
    torch.manual_seed(0)
    s, t = torch.randn(7, 10), torch.randn(7, 10)
    T = 20.0
    # the reference in float64: at T = 20 the KL (~1.7e-3) is a small difference of log-probabilities
    # (~-2.3), so a float32 reference is itself off by ~1e-5 relative (it failed rel=1e-5 on one CPU)
    p, q = torch.softmax(s.double() / T, 1), torch.softmax(t.double() / T, 1)
    expected = (q * (q.log() - p.log())).sum(1).mean()
    reverse = (p * (p.log() - q.log())).sum(1).mean()  # the wrong direction is 0.9 % away: still caught
    assert float(soft_label_kl(s, t, T)) == pytest.approx(float(expected), rel=1e-4)
    assert float(soft_label_kl(s, t, T)) != pytest.approx(float(reverse), rel=1e-4)
    assert float(soft_label_kl(t, t, T)) == pytest.approx(0.0, abs=1e-7)


def test_width_64_is_torchvision_resnet18_with_the_small_image_stem():
    import torchvision

    ref = torchvision.models.resnet18(num_classes=10)
    ref.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    ref.maxpool = nn.Identity()
    ours = build_classifier("resnet18-small", 10, 64)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    small = build_classifier("resnet18-small", 10, 16)
    assert small.fc.in_features == 128 and small.conv1.out_channels == 16
    assert small(torch.randn(2, 3, 28, 28)).shape == (2, 10)
    with pytest.raises(StudioError, match="arch"):
        build_classifier("vgg-tiny", 10)


def test_classifier_round_trip_and_corrupt_weights(tmp_path):
    torch.manual_seed(0)
    model = build_classifier("resnet18-small", 10, 8).eval()
    save_classifier(model, tmp_path / "t", {"arch": "resnet18-small", "width": 8, "class_names": CLASSES,
                                            "resolution": 16})
    loaded, meta = load_classifier(tmp_path / "t")
    x = torch.randn(3, 3, 16, 16)
    assert torch.equal(loaded.eval()(x), model(x)) and meta["resolution"] == 16
    (tmp_path / "t" / "classifier.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(StudioError, match="cannot read"):
        load_classifier(tmp_path / "t")
    with pytest.raises(StudioError, match="not found"):
        load_classifier(tmp_path / "missing")


@pytest.fixture()
def random_teacher(tmp_path):
    """An untrained teacher (BN running stats 0/1 are a valid target) at 16x16."""
    torch.manual_seed(0)
    model = build_classifier("resnet18-small", 10, 4)
    return save_classifier(model, tmp_path / "teacher", {"arch": "resnet18-small", "width": 4,
                                                         "class_names": CLASSES, "resolution": 16})


def _recover_cfg(teacher, out, **kw):
    base = dict(teacher=str(teacher), ipc=2, iterations=6, checkpoint_every=2, out=str(out), mixed_precision="no")
    return RecoverConfig(**{**base, **kw})


def test_recovery_lowers_the_loss(random_teacher):
    teacher, _ = load_classifier(random_teacher)
    cfg = _recover_cfg(random_teacher, "unused", iterations=15, curriculum="step", jitter=0, r_bn=0.01)
    init = torch.randn(10, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    method = Recovery(teacher, init, torch.arange(10), cfg)

    def total(x):
        with torch.no_grad():
            ce = nn.functional.cross_entropy(method.teacher(x), torch.arange(10))
            return float(ce + cfg.r_bn * method.bn.value())

    before = total(init.clamp(-1, 1))
    from studio.training.loop import train

    tcfg = TrainerConfig(steps=15, batch_size=1, lr=cfg.lr, lr_schedule="cosine", adam_beta1=0.5, adam_beta2=0.9,
                         max_grad_norm=0.0, ema_decay=0.0, tracker="none", progress=False, checkpoint_every=100,
                         mixed_precision="no")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        res = train(method, tcfg, d)
    after = total(res.modules["images"].pixels.detach())
    assert after < 0.8 * before
    assert res.modules["images"].pixels.abs().max() <= 1.0


class _Killed(Exception):
    pass


def test_recovery_resumes_after_a_kill_and_keeps_finished_units(random_teacher, tmp_path, monkeypatch):
    ref = run_recover(_recover_cfg(random_teacher, tmp_path / "ref"))
    out = tmp_path / "killed"
    original = Recovery.on_step_end
    calls = {"n": 0}

    def dying(self, step, logs):  # crash in the 2nd unit (IPC index 1) after its step-2 checkpoint
        original(self, step, logs)
        calls["n"] += 1
        if calls["n"] == 6 + 4:
            raise _Killed()

    monkeypatch.setattr(Recovery, "on_step_end", dying)
    with pytest.raises(_Killed):
        run_recover(_recover_cfg(random_teacher, out))
    first = out / folder_name(CLASSES[0]) / "ipc_0000.png"
    assert first.is_file() and not (out / folder_name(CLASSES[0]) / "ipc_0001.png").exists()
    assert any((out / ".work").rglob("step-00000002"))
    stamp = first.stat().st_mtime_ns
    rerun = {"n": 0}

    def counting(self, step, logs):
        original(self, step, logs)
        rerun["n"] += 1

    monkeypatch.setattr(Recovery, "on_step_end", counting)
    run_recover(_recover_cfg(random_teacher, out))
    assert rerun["n"] == 4  # steps 2..5 of the killed unit only: resumed from its checkpoint
    assert first.stat().st_mtime_ns == stamp  # a finished unit is not recomputed
    for c in CLASSES:
        for i in range(2):
            name = f"{folder_name(c)}/ipc_{i:04d}.png"
            assert np.array_equal(_png(ref / name), _png(out / name)), name
    man = json.loads((out / "manifest.json").read_text())
    assert len(man["units"]) == 2 and man["median_ms_per_iteration"] > 0
    assert not (out / ".work").exists()


def _png(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def test_recovered_folder_loads_with_the_core_loader_in_teacher_order(random_teacher, tmp_path):
    out = run_recover(_recover_cfg(random_teacher, tmp_path / "r", ipc=1, iterations=2, curriculum="none"))
    data = load_image_folder(out, resolution=16)
    assert len(data) == 10 and data.images.shape == (10, 16, 16, 3)
    assert "t-shirt-top" in data.class_names
    ordered = load_distilled(out, CLASSES, 16)
    assert sorted(ordered.labels.tolist()) == list(range(10))
    assert ordered.class_names == CLASSES
    # pixel round trip: the trouser image holds label 1
    k = int(np.flatnonzero(ordered.labels == 1)[0])
    assert np.array_equal(ordered.images[k], _png(out / "trouser" / "ipc_0000.png"))
    with pytest.raises(StudioError, match="fewer than"):
        load_distilled(out, CLASSES, 16, ipc=2)
    with pytest.raises(StudioError, match="other settings"):
        run_recover(_recover_cfg(random_teacher, tmp_path / "r", ipc=1, iterations=3, curriculum="none"))


def test_three_channel_recovery_of_a_random_teacher_is_in_colour(random_teacher, tmp_path):
    out = run_recover(_recover_cfg(random_teacher, tmp_path / "c", ipc=1, iterations=2))
    img = load_image_folder(out, resolution=16).images
    assert not np.array_equal(img[..., 0], img[..., 1])  # no "channels" in its meta: 3 free channels


def test_bad_recover_arguments_are_one_line_errors(random_teacher, tmp_path):
    for kw, msg in ((dict(channels="2"), "channels"), (dict(curriculum="exp"), "curriculum"), (dict(milestone=1.5), "milestone"),
                    (dict(init="photos"), "init"), (dict(ipc=0), "ipc")):
        with pytest.raises(StudioError, match=msg):
            run_recover(_recover_cfg(random_teacher, tmp_path / "x", **kw))
    with pytest.raises(StudioError, match="not found"):
        run_recover(_recover_cfg(tmp_path / "nothing", tmp_path / "x"))


def test_random_subset_takes_ipc_images_of_every_class(fake_fmnist):
    from studio.data import load_dataset

    data = load_dataset("fashion-mnist", data_dir=fake_fmnist)
    sub = random_subset(data, 3, seed=0)
    assert np.bincount(sub.labels, minlength=10).tolist() == [3] * 10
    assert random_subset(data, 3, seed=0).images.tobytes() == sub.images.tobytes()
    with pytest.raises(StudioError, match="fewer than"):
        random_subset(data, 50, seed=0)


def _top1(model, data_dir) -> float:
    """Test top-1 (%) computed here image by image, independently of studio.models.classifier.accuracy."""
    from studio.data import load_dataset

    test = load_dataset("fashion-mnist:test", data_dir=data_dir)
    model.eval()
    with torch.no_grad():
        hits = [int(model(test.pixels(slice(i, i + 1))).argmax()) == int(test.labels[i]) for i in range(len(test))]
    return 100.0 * sum(hits) / len(hits)


def test_squeeze_recover_eval_end_to_end(fake_fmnist, tmp_path):
    tc = TrainerConfig(steps=60, batch_size=32, lr=3e-3, lr_schedule="cosine", ema_decay=0.0, max_grad_norm=0.0,
                       tracker="none", progress=False, checkpoint_every=100, mixed_precision="no")
    teacher = run_squeeze(SqueezeConfig(data_dir=str(fake_fmnist), width=8, out=str(tmp_path / "teacher"), train=tc))
    meta = json.loads((teacher / "classifier.json").read_text())
    assert meta["test_top1"] >= 50.0 and meta["test_top1"] == _top1(load_classifier(teacher)[0], fake_fmnist)  # the fake classes are bands at distinct rows: easy
    assert meta["channels"] == 1  # Fashion-MNIST is grayscale
    distilled = run_recover(RecoverConfig(teacher=str(teacher), ipc=2, iterations=4, out=str(tmp_path / "ipc2"),
                                          mixed_precision="no"))
    gray = load_image_folder(distilled).images  # channels auto: one channel repeated, like the data
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])
    ec = TrainerConfig(steps=3, batch_size=10, ema_decay=0.0, max_grad_norm=0.0, tracker="none", progress=False,
                       mixed_precision="no")
    for data in (str(distilled), "random", "full"):
        rep = run_eval(EvalConfig(data=data, teacher=str(teacher), data_dir=str(fake_fmnist), ipc=1,
                                  out=str(tmp_path / "eval" / data.replace("/", "_")), train=ec))
        assert rep["steps"] == 3
        student, _ = load_classifier(tmp_path / "eval" / data.replace("/", "_"))
        assert rep["top1"] == _top1(student, fake_fmnist)
        assert rep["images"] == {"random": 10, "full": 64}.get(data, 10)  # first 1 of the 2 per class
    saved = json.loads((tmp_path / "eval" / "full" / "result.json").read_text())
    assert saved["data"].startswith("full")
    with pytest.raises(StudioError, match="needs --ipc"):
        run_eval(EvalConfig(data="random", teacher=str(teacher), data_dir=str(fake_fmnist), train=ec))
    with pytest.raises(StudioError, match="not a folder"):
        run_eval(EvalConfig(data=str(tmp_path / "nope"), teacher=str(teacher), data_dir=str(fake_fmnist), train=ec))


def test_cda_commands_are_registered_and_fail_with_one_line(tmp_path, capsys):
    from studio.cli import build_parser, main
    from studio.cli.schema import config_from_args

    parser, commands = build_parser()
    assert {("cda", "squeeze"), ("cda", "recover"), ("cda", "eval")} <= set(commands)
    ns = parser.parse_args(["cda", "recover", "--teacher", "t", "--ipc", "3", "--curriculum", "none"])
    cfg = config_from_args(commands[ns._path][0], ns)
    assert (cfg.ipc, cfg.curriculum, cfg.iterations, cfg.lr) == (3, "none", 1000, 0.25)
    assert main(["cda", "recover", "--teacher", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


def test_generator_init_starts_from_the_pipelines_class_images(random_teacher, tiny_pipeline_dir, tmp_path):
    from distill.cda.recover import _init_images

    cfg = _recover_cfg(random_teacher, tmp_path / "g", ipc=1, iterations=1, init=f"generator:{tiny_pipeline_dir}")
    init = _init_images(cfg, 0, [0, 1, 2], CLASSES, 16)
    assert init.shape == (3, 3, 16, 16) and init.min() >= -1 and init.max() <= 1
    assert not torch.allclose(init[0], init[1])  # one prompt and seed per class
    assert torch.equal(init, _init_images(cfg, 0, [0, 1, 2], CLASSES, 16))  # reproducible
    out = run_recover(cfg)
    assert len(load_image_folder(out, resolution=16)) == 10


def test_squeeze_loads_a_local_weights_file_instead_of_training(fake_fmnist, tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = build_classifier("resnet18-small", 10, 8)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    out = run_squeeze(SqueezeConfig(data_dir=str(fake_fmnist), width=8, weights=str(tmp_path / "w.safetensors"),
                                    out=str(tmp_path / "t")))
    loaded, meta = load_classifier(out)
    assert meta["steps"] == 0 and (out / "config.json").is_file()
    assert meta["test_top1"] == _top1(model, fake_fmnist)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    with pytest.raises(StudioError, match="does not fit"):
        run_squeeze(SqueezeConfig(data_dir=str(fake_fmnist), width=16, weights=str(tmp_path / "w.safetensors"),
                                  out=str(tmp_path / "t2")))


def test_ipc_ranges_share_one_output_folder(random_teacher, tmp_path):
    out = tmp_path / "shared"
    (out / ".work" / "other-process-unit").mkdir(parents=True)  # another range still working
    run_recover(_recover_cfg(random_teacher, out, iterations=2, ipc=2, ipc_start=1, ipc_end=2))
    assert (out / ".work" / "other-process-unit").is_dir()  # not removed under the other process
    run_recover(_recover_cfg(random_teacher, out, iterations=2, ipc=2, ipc_start=0, ipc_end=1))
    man = json.loads((out / "manifest.json").read_text())
    assert sorted(man["units"]) == ["ipc0000_c0000-0009", "ipc0001_c0000-0009"]
    assert len(load_image_folder(out, resolution=16)) == 20


def test_a_unit_killed_after_its_last_checkpoint_still_writes_its_images(random_teacher, tmp_path, monkeypatch):
    import distill.cda.recover as rec

    calls = {"n": 0}
    real_save = rec.save_png

    def die_on_save(*a, **k):  # killed between the final checkpoint and the PNGs
        calls["n"] += 1
        raise _Killed()

    monkeypatch.setattr(rec, "save_png", die_on_save)
    with pytest.raises(_Killed):
        run_recover(_recover_cfg(random_teacher, tmp_path / "k", ipc=1, iterations=2))
    monkeypatch.setattr(rec, "save_png", real_save)
    out = run_recover(_recover_cfg(random_teacher, tmp_path / "k", ipc=1, iterations=2))
    assert len(load_image_folder(out, resolution=16)) == 10
