"""Prompt sources: prompt files (one prompt per line) and class prompts of a labelled set."""

from __future__ import annotations

from pathlib import Path

from studio import StudioError
from studio.data.captioned import CAPTION_TEMPLATES, caption


def read_prompt_file(path) -> list[str]:
    """Non-blank lines of a UTF-8 text file, stripped; ``#`` starts a comment line."""
    path = Path(path)
    if not path.is_file():
        raise StudioError(f"prompt file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise StudioError(f"prompt file {path} is not UTF-8 text") from None
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise StudioError(f"prompt file {path} has no prompts (one per line)")
    return prompts


def class_prompts(class_names: list[str]) -> list[str]:
    """The canonical prompt per class: "a photo of a dress", "a photo of an ankle boot"."""
    return [caption(CAPTION_TEMPLATES[0], n) for n in class_names]


def prompts_from(spec: str, data_dir=None) -> list[str]:
    """A prompt file's lines, or the distinct captions of a dataset spec (sorted, so stable)."""
    if Path(spec).is_file():
        return read_prompt_file(spec)
    from studio.data.registry import load_dataset

    try:
        data = load_dataset(spec, data_dir=data_dir)
    except StudioError as e:
        raise StudioError(f"--prompts {spec!r} is neither a prompt file nor a dataset: {e}") from None
    return sorted(set(data.captions))
