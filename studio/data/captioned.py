"""The one in-memory dataset type every loader returns: uint8 images with labels and captions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

# Caption templates; the first is the canonical class prompt ("a photo of a dress").
CAPTION_TEMPLATES = (
    "a photo of {a_name}",
    "a picture of {a_name}",
    "an image of {a_name}",
    "a product photo of {a_name}",
)


def caption(template: str, name: str) -> str:
    """Fill a template with the class name and its indefinite article ("an ankle boot")."""
    return template.format(a_name=("an " if name[:1].lower() in "aeiou" else "a ") + name)


@dataclass
class CaptionedImages(torch.utils.data.Dataset):
    """Images as a uint8 array (N, H, W, C), integer labels (or -1), and one caption per image.

    ``__getitem__`` returns a float tensor in [-1, 1], channels first, with 3 channels
    (grayscale is repeated, as Stable Diffusion's VAE expects RGB), plus label and caption.
    """

    images: np.ndarray
    labels: np.ndarray
    captions: list[str]
    class_names: list[str] = field(default_factory=list)
    name: str = "dataset"

    def __post_init__(self):
        if len(self.images) == 0:
            raise _empty_error(self.name)
        if not (len(self.images) == len(self.labels) == len(self.captions)):
            raise ValueError("images, labels and captions must have the same length")

    def __len__(self) -> int:
        return len(self.images)

    def pixels(self, idx) -> torch.Tensor:
        """Images ``idx`` (an int, slice or index array) as float in [-1, 1], shape (B, 3, H, W)."""
        x = torch.from_numpy(np.ascontiguousarray(self.images[idx])).float()
        x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x.permute(2, 0, 1)
        if x.shape[-3] == 1:
            x = x.repeat_interleave(3, dim=-3)
        return x / 127.5 - 1.0

    def __getitem__(self, i: int) -> dict:
        return {"pixels": self.pixels(i), "label": int(self.labels[i]), "caption": self.captions[i]}

    def batch(self, indices) -> dict:
        """A collated batch for the given indices (one vectorised gather, no per-item loop)."""
        indices = np.asarray(indices)
        return {
            "pixels": self.pixels(indices),
            "label": torch.from_numpy(self.labels[indices].astype(np.int64)),
            "caption": [self.captions[i] for i in indices],
        }


def _empty_error(name: str) -> Exception:
    from studio import StudioError

    return StudioError(f"dataset {name!r} is empty: no readable images were found")


def captions_for(labels: np.ndarray, class_names: list[str], seed: int = 0) -> list[str]:
    """One caption per label, the template drawn with a fixed seed so captions are reproducible."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(CAPTION_TEMPLATES), size=len(labels))
    return [caption(CAPTION_TEMPLATES[p], class_names[y]) for p, y in zip(picks, labels)]
