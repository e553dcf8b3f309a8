"""Image conversions, grids and PNG files (written atomically, with optional text metadata).

The studio's models work on NCHW tensors in [-1, 1]; grids, PNGs and FID take NHWC arrays in
[0, 1] or uint8. :func:`to_unit_hwc` and :func:`from_unit_hwc` are the one pair of conversions
between them (x / 2 + 0.5, as diffusers' pipelines post-process).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from studio.files import atomic_path


def to_unit_hwc(x: torch.Tensor) -> np.ndarray:
    """NCHW in [-1, 1] -> float32 NHWC in [0, 1] on the CPU (clamped), as diffusers post-processes."""
    return (x.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


def from_unit_hwc(images: np.ndarray) -> torch.Tensor:
    """float NHWC in [0, 1] -> float32 NCHW in [-1, 1] (the inverse of :func:`to_unit_hwc`)."""
    return torch.from_numpy(np.asarray(images, dtype=np.float32)).permute(0, 3, 1, 2) * 2 - 1


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
    info = PngImagePlugin.PngInfo()
    for k, v in (metadata or {}).items():
        info.add_text(str(k), str(v))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)
    return Path(path)
