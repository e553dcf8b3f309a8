"""The process group: one place that decides whether to run on CPU processes (gloo) or GPUs.

accelerate only forms a multi-process CPU world (``torchrun --nproc_per_node N`` on a machine
without GPUs) when asked for ``cpu=True``; without it every process believes it is alone.
"""

from __future__ import annotations

import torch
from accelerate import PartialState


def use_cpu() -> bool:
    return not torch.cuda.is_available()


def process_state() -> PartialState:
    return PartialState(cpu=use_cpu())
