import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from studio.data.fashion_mnist import FILES, write_idx  # noqa: E402


def make_fake_fashion_mnist(root: Path, n_train: int = 64, n_test: int = 32) -> Path:
    """Four IDX files with class-dependent patterns (class y: a bright band at row 2y+4)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
        for i, y in enumerate(labels):
            images[i, 2 * y + 4: 2 * y + 8, 4:24] = 230
        img_name, lbl_name = FILES[split]
        write_idx(root / img_name, images)
        write_idx(root / lbl_name, labels)
    return root


@pytest.fixture(scope="session")
def fake_fmnist(tmp_path_factory) -> Path:
    return make_fake_fashion_mnist(tmp_path_factory.mktemp("fmnist"))


@pytest.fixture(scope="session")
def tiny_pipeline():
    from studio.data import FASHION_MNIST_CLASSES
    from studio.models.presets import build_pipeline, tokenizer_corpus

    return build_pipeline("tiny", tokenizer_corpus(FASHION_MNIST_CLASSES), seed=0)


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tiny_pipeline, tmp_path_factory) -> Path:
    from studio.models.backbone import save_pipeline

    return save_pipeline(tiny_pipeline, tmp_path_factory.mktemp("tiny_pipe"))


def subprocess_env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env
