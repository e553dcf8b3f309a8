import gzip
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from studio import StudioError
from studio.data import class_prompts, load_dataset, load_fashion_mnist, load_image_folder, read_prompt_file
from studio.data.fashion_mnist import DEBIAN_DIR, FASHION_MNIST_CLASSES, read_idx, write_idx


def test_idx_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), arr)


def test_truncated_idx_is_a_one_line_error(tmp_path):
    arr = np.zeros((10, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "a.gz", arr)
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(StudioError, match="truncated") as e:
        read_idx(tmp_path / "cut.gz")
    assert "\n" not in str(e.value)


def test_bad_magic_and_missing_file(tmp_path):
    (tmp_path / "x.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04hello"))
    with pytest.raises(StudioError, match="not an IDX"):
        read_idx(tmp_path / "x.gz")
    with pytest.raises(StudioError, match="not found"):
        read_idx(tmp_path / "nope.gz")


def test_missing_data_dir_says_how_to_fix(tmp_path):
    with pytest.raises(StudioError, match="--data-dir"):
        load_fashion_mnist("train", data_dir=tmp_path / "empty")


def test_fake_fashion_mnist_padding_captions(fake_fmnist):
    ds = load_fashion_mnist("train", data_dir=fake_fmnist, resolution=32)
    assert ds.images.shape == (64, 32, 32, 1)
    assert ds.images[:, :2].max() == 0 and ds.images[:, -2:].max() == 0  # zero padding, 2 px each side
    assert set(ds.labels.tolist()) == set(range(10))
    name = FASHION_MNIST_CLASSES[int(ds.labels[9])]
    assert name in ds.captions[9] and ds.captions[9].startswith(("a ", "an "))
    b = ds.batch([0, 1, 2])
    assert b["pixels"].shape == (3, 3, 32, 32) and b["pixels"].min() >= -1 and b["pixels"].max() <= 1


def test_real_fashion_mnist_when_installed():
    if not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("dataset-fashion-mnist not installed (the README test command installs it)")
    train, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    assert len(train) == 60000 and len(test) == 10000
    assert np.bincount(test.labels).tolist() == [1000] * 10


def test_class_prompts_use_the_right_article():
    assert class_prompts(["dress", "ankle boot"]) == ["a photo of a dress", "a photo of an ankle boot"]


def _png(path, value, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def test_image_folder_class_subfolders_skip_corrupt(tmp_path):
    _png(tmp_path / "cat" / "a.png", 10)
    _png(tmp_path / "cat" / "b.png", 20, size=16)  # mixed sizes are resized
    _png(tmp_path / "dog" / "c.png", 200)
    (tmp_path / "dog" / "broken.png").write_bytes(b"not a png at all")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = load_image_folder(tmp_path, resolution=8)
    assert len(ds) == 3 and ds.class_names == ["cat", "dog"]
    assert ds.labels.tolist() == [0, 0, 1]
    assert any("skipped 1 unreadable" in str(x.message) for x in w)
    assert ds.captions[2].endswith("a dog")


def test_image_folder_metadata_jsonl_and_csv(tmp_path):
    jl = tmp_path / "jl"
    _png(jl / "x.png", 1)
    _png(jl / "y.png", 2)
    (jl / "metadata.jsonl").write_text("\n".join(json.dumps({"file_name": f, "text": t})
                                                 for f, t in [("x.png", "red shoe"), ("y.png", "blue hat")]))
    ds = load_image_folder(jl, resolution=8)
    assert ds.captions == ["red shoe", "blue hat"] and ds.labels.tolist() == [-1, -1]
    cs = tmp_path / "cs"
    _png(cs / "z.png", 3)
    (cs / "metadata.csv").write_text("file_name,text\nz.png,a green bag\nmissing.png,gone\n")
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = load_image_folder(cs, resolution=8)
    assert ds.captions == ["a green bag"]


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(StudioError, match="empty"):
        load_image_folder(tmp_path, resolution=8)
    with pytest.raises(StudioError, match="not found"):
        load_image_folder(tmp_path / "nope")
    with pytest.raises(StudioError, match="unknown dataset"):
        load_dataset("no-such-dataset")


def test_prompt_file(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("a photo of a bag\n\n# comment\n  a photo of a coat  \n")
    assert read_prompt_file(p) == ["a photo of a bag", "a photo of a coat"]
    (tmp_path / "e.txt").write_text("\n  \n")
    with pytest.raises(StudioError, match="no prompts"):
        read_prompt_file(tmp_path / "e.txt")
    with pytest.raises(StudioError, match="not found"):
        read_prompt_file(tmp_path / "missing.txt")
