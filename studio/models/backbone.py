"""Load and save diffusers Stable Diffusion pipelines: a local directory or a hub id.

The same code serves SD 1.5 on a GPU and the built-in small pipelines on a CPU. Weights
are read as safetensors only (``use_safetensors=True``); nothing is unpickled.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

import torch
from diffusers import StableDiffusionPipeline

from studio import StudioError
from studio.files import temp_path

Dtype = Literal["float32", "bfloat16", "float16"]  # a command's --dtype; parse_dtype also takes fp32/bf16/fp16
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise StudioError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def is_pipeline_dir(path) -> bool:
    return (Path(path) / "model_index.json").is_file()


def load_pipeline(source: str | os.PathLike, dtype="float32", device: str | torch.device = "cpu",
                  pipeline_cls=StableDiffusionPipeline):
    """A pipeline from a local diffusers directory or a hub id (e.g. an SD 1.5 repository).

    A local path must hold ``model_index.json``. A hub id needs network access; with
    ``HF_HUB_OFFLINE=1`` only the local hub cache is tried, and a miss is a one-line error.
    """
    source = str(source)
    local = Path(source).expanduser()
    # hub ids are "org/name"; anything else (or anything that exists) is a local path
    looks_local = local.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1
    if looks_local and not is_pipeline_dir(local):
        raise StudioError(f"{source} is not a diffusers pipeline directory (no model_index.json)")
    kwargs = dict(dtype=parse_dtype(dtype), use_safetensors=True)
    if pipeline_cls is StableDiffusionPipeline:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    try:
        pipe = pipeline_cls.from_pretrained(str(local) if looks_local else source, **kwargs)
    except (OSError, ValueError) as e:
        where = "directory" if looks_local else "hub id (needs network or a filled hub cache)"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StudioError(f"cannot load pipeline from {where} {source}: {first}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


class Components:
    """diffusers components saved side by side (``unet/``, ``scheduler/``) without a pipeline class, so without
    a ``model_index.json``: for a model no diffusers pipeline samples correctly. ``save_pipeline`` takes it."""

    def __init__(self, **parts):
        self.parts = parts

    def save_pretrained(self, path: str, safe_serialization: bool = True) -> None:
        for name, part in self.parts.items():
            if hasattr(part, "save_config") and not hasattr(part, "state_dict"):  # a scheduler
                part.save_pretrained(str(Path(path) / name))
            else:
                part.save_pretrained(str(Path(path) / name), safe_serialization=safe_serialization)


def save_pipeline(pipe, out_dir) -> Path:
    """``save_pretrained`` (safetensors) into ``out_dir``, replacing components atomically.

    Components are written to a temporary folder inside ``out_dir`` and moved in; the
    ``model_index.json`` that marks a complete pipeline moves last. Other files in
    ``out_dir`` (a run's config, checkpoints) are left alone.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out / "pipeline")
    try:
        pipe.save_pretrained(str(tmp), safe_serialization=True)
        for name in sorted(os.listdir(tmp), key=lambda n: n == "model_index.json"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(tmp / name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
