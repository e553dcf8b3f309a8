"""Fashion-MNIST from the official IDX ``.gz`` files (Xiao et al. 2017).

The files come from Debian's ``dataset-fashion-mnist`` package
(/usr/share/datasets/fashion-mnist), the studio cache (``studio data fetch``),
or any directory given with ``--data-dir``.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from studio import StudioError
from studio.data.captioned import CaptionedImages, captions_for

FASHION_MNIST_CLASSES = [
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
]
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def cache_dir() -> Path:
    """The studio's own download folder for Fashion-MNIST."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "studio" / "fashion-mnist"


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Where the IDX files are looked for, in order."""
    if data_dir is not None:
        return [Path(data_dir)]
    env = os.environ.get("STUDIO_FASHION_MNIST_DIR")
    return ([Path(env)] if env else []) + [DEBIAN_DIR, cache_dir()]


def find_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The first candidate directory that holds all four IDX files, or a one-line error."""
    tried = candidate_dirs(data_dir)
    for d in tried:
        if all((d / f).is_file() for pair in FILES.values() for f in pair):
            return d
    where = ", ".join(str(d) for d in tried)
    raise StudioError(
        f"Fashion-MNIST IDX files not found in {where}; run `studio data fetch` "
        "or pass --data-dir DIR holding train-images-idx3-ubyte.gz and the other three files"
    )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array.

    Format (LeCun's MNIST page): 2 zero bytes, a dtype code, the number of dims,
    then one big-endian uint32 per dim, then the data.
    """
    path = Path(path)
    if not path.is_file():
        raise StudioError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # zlib.error: a corrupted gzip stream
        raise StudioError(f"cannot read IDX file {path}: {e} (re-download it)") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise StudioError(f"{path} is not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise StudioError(f"IDX file {path} is truncated: header cut short")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    need = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header < need:
        raise StudioError(
            f"IDX file {path} is truncated: {len(raw) - header} of {need} data bytes (re-download it)"
        )
    return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=header).reshape(shape)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as a gzip IDX file (used to build test fixtures)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def load_fashion_mnist(split: str = "train", data_dir=None, resolution: int = 32,
                       limit: int | None = None) -> CaptionedImages:
    """Fashion-MNIST ``split`` ('train' or 'test'), zero-padded from 28x28 to ``resolution``.

    Padding (not resizing) keeps the pixels exact; the background is black (0).
    """
    if split not in FILES:
        raise StudioError(f"unknown Fashion-MNIST split {split!r}; use 'train' or 'test'")
    root = find_data_dir(data_dir)
    img_file, lbl_file = FILES[split]
    images = read_idx(root / img_file)
    labels = read_idx(root / lbl_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise StudioError(f"Fashion-MNIST files in {root} disagree: images {images.shape}, labels {labels.shape}")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    pad = resolution - images.shape[1]
    if pad < 0:
        raise StudioError(f"resolution {resolution} is smaller than Fashion-MNIST's 28 pixels")
    lo = pad // 2
    images = np.pad(images, ((0, 0), (lo, pad - lo), (lo, pad - lo)))[..., None]
    labels = labels.astype(np.int64)
    return CaptionedImages(images, labels, captions_for(labels, FASHION_MNIST_CLASSES),
                           list(FASHION_MNIST_CLASSES), name=f"fashion-mnist:{split}")
