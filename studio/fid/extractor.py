"""Inception pool3 features from uint8 images, with the preprocessing written into every result.

Protocols:
- ``tf-bilinear`` (default): the network's own resize to 299x299, bilinear like TensorFlow 1.x
  without antialiasing, as torch-fidelity and the TF-era papers compute FID;
- ``pil-bicubic``: each image is first resized to 299x299 with PIL's bicubic filter, in the
  style of clean-fid (Parmar et al. 2022), then passed unchanged through the network.
Float images in [0, 1] become uint8 by rounding (not truncation); grayscale becomes 3 channels.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from PIL import Image

from studio import StudioError
from studio.fid.inception import FIDInceptionV3, fold_batchnorm, resolve_weights, weights_hash

RESIZES = ("tf-bilinear", "pil-bicubic")
Resize = Literal[RESIZES]
SIZE = 299


def to_uint8_rgb(images) -> torch.Tensor:
    """(N, H, W, C) or (N, C, H, W) floats in [0, 1] or uint8 -> uint8 (N, 3, H, W)."""
    x = torch.as_tensor(np.asarray(images)) if not torch.is_tensor(images) else images
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    if x.ndim != 4:
        raise StudioError(f"expected a batch of images (N, H, W, C) or (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.dtype != torch.uint8:
        x = (x.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise StudioError(f"images must have 1 or 3 channels, got {x.shape[1]}")
    return x.contiguous()


def pil_bicubic_299(x: torch.Tensor) -> torch.Tensor:
    out = [np.asarray(Image.fromarray(img.permute(1, 2, 0).numpy()).resize((SIZE, SIZE), Image.BICUBIC))
           for img in x.cpu()]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


class FeatureExtractor:
    def __init__(self, weights: str | None = None, resize: str = "tf-bilinear", device="cpu"):
        if resize not in RESIZES:
            raise StudioError(f"unknown resize {resize!r}; use one of {', '.join(RESIZES)}")
        state, self.weights_source = resolve_weights(weights)
        self.weights_hash = weights_hash(state)
        self.resize = resize
        self.device = torch.device(device)
        # BN folded into the convs and channels-last weights: about 1.6x faster on a 2-core CPU at the
        # same fp32 values (benchmarks/fid_speed.py); the result records it.
        net = fold_batchnorm(FIDInceptionV3(state, antialias=False))
        self.net = net.to(self.device, memory_format=torch.channels_last)

    @property
    def protocol(self) -> dict:
        return {"network": "inception-v3-compat pool3 (2048), BN folded, fp32", "resize": self.resize,
                "antialias": False,
                "uint8": "round", "weights": self.weights_source, "weights_sha256_16": self.weights_hash}

    @torch.no_grad()
    def __call__(self, images) -> torch.Tensor:
        x = to_uint8_rgb(images)
        if self.resize == "pil-bicubic":
            x = pil_bicubic_299(x)
        return self.net(x.to(self.device)).double().cpu()
