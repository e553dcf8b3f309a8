"""What FID compares, given as a spec string on either side.

- an image folder (every readable image below it, sorted by path; unreadable files are
  skipped and counted; mixed sizes are fine);
- a dataset split: ``fashion-mnist:train`` or ``fashion-mnist:test`` (32x32, zero-padded);
- a pipeline directory (``model_index.json``): N images are generated, image k from prompt
  k mod P with seed ``seed + k``; prompts come from a prompt file or, by default, the class
  prompts of the labelled other side (or of Fashion-MNIST);
- a generator folder (an EDM or consistency model, ``studio.models.generators``): the same, with
  image k of the class prompt k mod P names (any prompt, for an unconditional model);
- a statistics file (``.npz`` with ``mu`` and ``sigma``).

Labels (for per-class metrics): a dataset split's own; a folder's class subfolders
(root/<class>/...); a pipeline sampled with class prompts (image k shows class k mod P).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from studio import StudioError
from studio.models.backbone import is_pipeline_dir
from studio.models.generators import generator_kind
from studio.data.imagefolder import IMAGE_EXTENSIONS


@dataclass
class Source:
    spec: str
    kind: str  # "images" or "stats"
    count: int = 0
    class_names: tuple = ()
    batches: Callable[[int], Iterator[np.ndarray]] | None = None
    cache_key: str | None = None  # None: never cache (generated images)
    skipped: int = 0
    generation: dict | None = None  # a pipeline side: the steps, guidance, seed and solver used
    labels: list | None = None  # class index of each image (of a folder: each image the last pass read)


def _folder(spec: str, num: int) -> Source:
    root = Path(spec)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise StudioError(f"image folder {root} has no images")
    files = files[:num] if num else files
    src = Source(spec, "images", count=len(files))
    parents = [p.relative_to(root).parts for p in files]
    if all(len(parts) > 1 for parts in parents):  # class subfolders: root/<class>/.../image
        src.class_names = tuple(sorted({parts[0] for parts in parents}))
        src.labels, index = [], {name: i for i, name in enumerate(src.class_names)}
    stamp = hashlib.sha256("\n".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files).encode())
    src.cache_key = f"folder:{root.resolve()}:{stamp.hexdigest()[:16]}"

    def batches(size: int):
        buf = []
        if src.labels is not None:
            src.labels = []  # of the images of this pass
        for path, parts in zip(files, parents):
            try:
                with Image.open(path) as im:
                    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
                src.skipped += 1
                continue
            if src.labels is not None:
                src.labels.append(index[parts[0]])
            if buf and (arr.shape != buf[0].shape or len(buf) == size):  # a batch holds one size
                yield np.stack(buf)
                buf = []
            buf.append(arr)
        if buf:
            yield np.stack(buf)
        if src.skipped:
            warnings.warn(f"skipped {src.skipped} unreadable image(s) in {root}", stacklevel=2)

    src.batches = batches
    return src


def _dataset(spec: str, num: int, data_dir) -> Source:
    from studio.data import load_dataset
    from studio.data.fashion_mnist import find_data_dir

    ds = load_dataset(spec, data_dir=data_dir, limit=num or None)
    root = find_data_dir(data_dir).resolve()  # the same split from other files must not share a cache entry
    images = ds.images

    def batches(size: int):
        for lo in range(0, len(images), size):
            yield images[lo:lo + size]

    return Source(spec, "images", count=len(images), class_names=tuple(ds.class_names), batches=batches,
                  cache_key=f"dataset:{spec}:{root}:{len(images)}", labels=[int(y) for y in ds.labels])


def _pipeline(spec: str, num: int, prompts: list[str], gen: dict, class_names: tuple = ()) -> Source:
    """``class_names``: the prompts are those classes' prompts in order, so image k shows class k mod P."""
    from studio.models.backbone import load_pipeline
    from studio.models.model_info import sampling_settings
    from studio.diffusion.sampling import generate

    if not num:
        raise StudioError(f"give --num: how many images to generate from the pipeline {spec}")
    pipe = load_pipeline(spec, device=gen.get("device", "cpu"))
    steps, guidance = sampling_settings(spec, gen.get("steps"), gen.get("guidance"))
    gen = {**gen, "steps": steps, "guidance": guidance}

    def batches(size: int):
        for lo in range(0, num, size):
            chunk = [prompts[k % len(prompts)] for k in range(lo, min(num, lo + size))]
            # image k uses seed + k: generate() numbers seeds from its first image
            yield generate(pipe, chunk, steps=gen["steps"], guidance=gen["guidance"], seed=gen["seed"] + lo,
                           solver=gen.get("solver", "auto"), batch_size=size)

    return Source(spec, "images", count=num, batches=batches, generation=gen, class_names=tuple(class_names),
                  labels=[k % len(prompts) for k in range(num)] if class_names else None)


def _generator(spec: str, num: int, prompts: list[str], gen: dict, class_names: tuple = ()) -> Source:
    """A class-label model: image k of the class prompt k mod P names, seed ``seed + k``."""
    from studio.models.generators import generate_from_prompts, label_of_prompt, load_generator
    from studio.models.model_info import sampling_settings

    if not num:
        raise StudioError(f"give --num: how many images to generate from the model {spec}")
    model = load_generator(spec, gen.get("device", "cpu"))
    for p in prompts if model.class_names else ():  # a prompt naming no class fails before any image is made
        label_of_prompt(p, model.class_names)
    gen = {**gen, "steps": sampling_settings(spec, gen.get("steps"))[0], "guidance": 0.0}

    def batches(size: int):
        for lo in range(0, num, size):
            chunk = [prompts[k % len(prompts)] for k in range(lo, min(num, lo + size))]
            yield generate_from_prompts(model, chunk, gen["steps"], gen["seed"] + lo, size)

    labelled = bool(class_names) and bool(model.class_names)
    return Source(spec, "images", count=num, batches=batches, generation=gen,
                  class_names=tuple(class_names) if labelled else (),
                  labels=[k % len(prompts) for k in range(num)] if labelled else None)


def open_source(spec: str, num: int = 0, data_dir=None, prompts: list[str] | None = None,
                gen: dict | None = None, class_names: tuple = ()) -> Source:
    if spec.endswith(".npz"):
        return Source(spec, "stats", cache_key=None)
    if spec.split(":", 1)[0] == "fashion-mnist":
        return _dataset(spec, num, data_dir)
    path = Path(spec)
    if is_pipeline_dir(path) and generator_kind(path) is None:
        return _pipeline(spec, num, prompts or [], gen or {}, class_names)
    if generator_kind(path) is not None:
        return _generator(spec, num, prompts or [], gen or {}, class_names)
    if path.is_dir():
        return _folder(spec, num)
    raise StudioError(f"{spec!r} is not an image folder, a dataset split (fashion-mnist:train|test), "
                      "a pipeline directory or an .npz statistics file")
