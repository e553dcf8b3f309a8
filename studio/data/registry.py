"""Resolve a dataset spec: ``fashion-mnist[:split]`` or a path to an image folder."""

from __future__ import annotations

from pathlib import Path

from studio import StudioError
from studio.data.captioned import CaptionedImages
from studio.data.fashion_mnist import load_fashion_mnist
from studio.data.imagefolder import load_image_folder


def load_dataset(spec: str, data_dir=None, resolution: int = 32, limit: int | None = None) -> CaptionedImages:
    """``fashion-mnist`` (train split), ``fashion-mnist:test``, or an image-folder path."""
    name, _, split = spec.partition(":")
    if name == "fashion-mnist":
        return load_fashion_mnist(split or "train", data_dir=data_dir, resolution=resolution, limit=limit)
    if Path(spec).exists():
        ds = load_image_folder(spec, resolution=resolution)
        if limit is not None:
            ds = CaptionedImages(ds.images[:limit], ds.labels[:limit], ds.captions[:limit], ds.class_names, ds.name)
        return ds
    raise StudioError(f"unknown dataset {spec!r}: use fashion-mnist[:train|test] or an existing image folder")
