"""Devices: the process group (CPU processes over gloo, or GPUs) and the ``--device`` of a command.

accelerate only forms a multi-process CPU world (``torchrun --nproc_per_node N`` on a machine
without GPUs) when asked for ``cpu=True``; without it every process believes it is alone.
"""

from __future__ import annotations

import torch
from accelerate import PartialState

from studio import StudioError


def use_cpu() -> bool:
    return not torch.cuda.is_available()


def process_state() -> PartialState:
    return PartialState(cpu=use_cpu())


def resolve_device(name: str) -> torch.device:
    """``--device`` as a torch device, or a one-line error for one this machine does not have."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise StudioError(f"--device {name!r} is not a device name; use cpu, cuda, cuda:1, mps, ...") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        found = f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA GPU"
        raise StudioError(f"--device {name}: this machine has {found}; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise StudioError(f"--device {name}: MPS is not available here; use --device cpu")
    return device
