"""Image grids and PNG files (written atomically, with optional text metadata)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] -> uint8 with rounding (not truncation)."""
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, nrow: int | None = None, pad: int = 2) -> Image.Image:
    """(N, H, W, C) float [0, 1] or uint8 -> one PIL image, ``nrow`` images per row."""
    imgs = images if images.dtype == np.uint8 else to_uint8(images)
    n, h, w, c = imgs.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, dtype=np.uint8)
    for k in range(n):
        r, q = divmod(k, nrow)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = imgs[k]
    return Image.fromarray(grid.squeeze(-1) if c == 1 else grid)


def save_png(image: Image.Image, path, metadata: dict | None = None) -> Path:
    """Write ``image`` as PNG via a temporary file and rename; metadata goes into tEXt chunks."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    for k, v in (metadata or {}).items():
        info.add_text(str(k), str(v))
    tmp = path.with_name(path.name + ".tmp")
    image.save(tmp, format="PNG", pnginfo=info)
    os.replace(tmp, path)
    return path
