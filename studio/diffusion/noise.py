"""Per-image seeded noise, the one source of it (in the spirit of EDM's ``StackedRandomGenerator``).

Image k of a batch owns a CPU ``torch.Generator`` seeded ``seeds[k]`` and draws, in order, its
initial noise and then any per-step noise, exactly as diffusers' ``randn_tensor`` does with a
list of generators. So image k is the same at any batch size, on any device, and equal to
what plain diffusers pipelines draw for the same seeds.
"""

from __future__ import annotations

import torch


def image_generators(seeds) -> list[torch.Generator]:
    """One CPU generator per image, seeded ``seeds[k]``."""
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def image_noise(shape_per_image, generators, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """(len(generators), *shape) standard normal; row k from ``generators[k]`` (a generator, or a seed)."""
    gens = [g if isinstance(g, torch.Generator) else torch.Generator("cpu").manual_seed(int(g)) for g in generators]
    return torch.cat([torch.randn((1, *shape_per_image), generator=g, dtype=dtype) for g in gens]).to(device)
