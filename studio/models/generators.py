"""Model folders that are not Stable Diffusion pipelines: pixel-space models of a few classes (EDM, a
consistency model) that generate from a class label, not from a prompt's text encoding.

A method registers a loader per model kind under the ``studio.generators`` entry point group (the core
never imports the methods); a folder whose ``studio_model.json`` names such a kind is a *generator
folder*. Sampling, FID (``studio.fid.sources``) and the app read it through :class:`ClassGenerator`.
A prompt selects the class it names (:func:`label_of_prompt`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
import re
from typing import Callable

import numpy as np

from studio import StudioError
from studio.models.model_info import MODEL_INFO, read_model_info


@dataclass
class ClassGenerator:
    """``sample(labels, seed, steps, num)`` -> float32 (num, H, W, 3) in [0, 1], image k from seed ``seed + k``
    (``labels``: one class per image, or None for an unconditional model)."""

    class_names: list[str]
    sample: Callable[..., np.ndarray]


def _loaders() -> dict:
    return {ep.name: ep for ep in entry_points(group="studio.generators")}


def generator_kind(path) -> str | None:
    """The kind of a generator folder, or None (a pipeline or anything else)."""
    path = Path(path)
    if not (path / MODEL_INFO).is_file() or not (path / "unet" / "config.json").is_file():
        return None
    kind = read_model_info(path).get("kind")
    return kind if kind in _loaders() else None


def load_generator(path, device: str = "cpu") -> ClassGenerator:
    kind = generator_kind(path)
    if kind is None:
        raise StudioError(f"{path} is not a model folder of a class-label generator (EDM or consistency model)")
    return _loaders()[kind].load()(path, device)


def _names(name: str) -> list[str]:
    """How a prompt may name a class: 't-shirt/top' also as 't-shirt' or 'top'; 'ankle boot'."""
    name = name.lower()
    return sorted({name, *[p.strip() for p in name.split("/") if p.strip()]}, key=len, reverse=True)


def label_of_prompt(prompt: str, class_names: list[str]) -> int:
    """The class a prompt names (the longest name found wins: 'ankle boot' over 'boot'); one-line error if none."""
    text = " ".join(prompt.lower().split())
    best = None
    for k, cls in enumerate(class_names):
        for n in _names(cls):  # a whole word or words, also as a plural: 'trousers', 'dresses', 'a t-shirt.'
            found = re.search(rf"(?<![\w-]){re.escape(n)}(?:s|es)?(?![\w-])", text)
            if found and (best is None or len(n) > best[1]):
                best = (k, len(n))
    if best is None:
        raise StudioError(f"the prompt {prompt!r} names none of this model's classes; name one of: "
                          f"{', '.join(class_names)}")
    return best[0]


def generate_from_prompts(gen: ClassGenerator, prompts: list[str], steps: int, seed: int = 0,
                          batch_size: int = 64, callback: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Image k of class ``label_of_prompt(prompts[k])`` (any prompt, for an unconditional model), seed ``seed + k``."""
    labels = [label_of_prompt(p, gen.class_names) for p in prompts] if gen.class_names else None
    out = []
    for lo in range(0, len(prompts), batch_size):
        n = min(batch_size, len(prompts) - lo)
        out.append(gen.sample(labels[lo:lo + n] if labels else None, seed + lo, steps, n))
        if callback is not None:
            callback(lo + n, len(prompts))
    return np.concatenate(out)
