"""Helpers shared by the benchmark scripts: result files and environment facts."""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from studio.files import write_json  # noqa: E402  (after the path insert: scripts run from a checkout)
from studio.training.checkpoints import list_checkpoints, read_state  # noqa: E402


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (speeds differ by machine), or platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine() -> dict:
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(), "cuda": torch.cuda.is_available(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def write_result(name: str, payload: dict, directory: Path = RESULTS) -> Path:
    path = write_json(directory / f"{name}.json", {**payload, "machine": machine()})
    print(f"wrote {path}")
    return path


def train_seconds(train_dir: Path) -> float:
    """Training seconds to the newest checkpoint of a run, summed over its resumed segments (trainer state)."""
    return round(float(read_state(list_checkpoints(train_dir)[-1]).get("seconds", 0.0)), 1)
