"""EDM and consistency model folders as class-label generators for sampling, FID and the app
(``studio.models.generators``; registered under the ``studio.generators`` entry point group)."""

from __future__ import annotations

from studio.images import to_unit_hwc
from studio.models.generators import ClassGenerator

from consistency import edm
from consistency.model import Precond, load_model
from consistency.sampling import default_sigmas
from consistency.sampling import sample as sample_cm


def load_edm(path, device: str = "cpu") -> ClassGenerator:
    unet, info = load_model(path, ("edm",))
    unet, pre = unet.to(device), Precond.of(info)

    def sample(labels, seed: int, steps: int, num: int):
        return to_unit_hwc(edm.sample(unet, pre, num, seed, steps, labels))

    return ClassGenerator(list(info.get("class_names") or []), sample)


def load_consistency(path, device: str = "cpu") -> ClassGenerator:
    """Steps 1 (sigma_max) or 2 (sigma_mid 0.821, iCT sec. 4), more on a Karras spread."""
    unet, info = load_model(path, ("consistency",))
    unet, pre = unet.to(device), Precond.of(info)

    def sample(labels, seed: int, steps: int, num: int):
        return to_unit_hwc(sample_cm(unet, num, seed, default_sigmas(steps), labels, precond=pre))

    return ClassGenerator(list(info.get("class_names") or []), sample)
