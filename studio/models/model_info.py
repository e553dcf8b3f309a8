"""What kind of model a pipeline directory holds: ``studio_model.json`` beside ``model_index.json``.

Written by every studio command that saves a pipeline; read by the sampler defaults, the
benchmarks and the UI's model picker. A directory without it is described from its scheduler
(a plain diffusers pipeline: ``teacher``, or ``flow`` for a velocity model).
"""

from __future__ import annotations

import json
from pathlib import Path

from studio.files import write_json
from studio.models.backbone import is_pipeline_dir

MODEL_INFO = "studio_model.json"
KINDS = ("teacher", "2-rectified-flow", "one-step-student", "flow", "consistency", "edm")


def write_model_info(pipe_dir, kind: str, steps: int, guidance: float, **extra) -> Path:
    """Record the kind and the recommended sampling settings (atomic write)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return write_json(Path(pipe_dir) / MODEL_INFO, {"kind": kind, "steps": steps, "guidance": guidance, **extra})


def read_model_info(pipe_dir) -> dict:
    """The recorded info, or one inferred from the scheduler config of a plain pipeline."""
    pipe_dir = Path(pipe_dir)
    path = pipe_dir / MODEL_INFO
    if path.is_file():
        return json.loads(path.read_text())
    sched = pipe_dir / "scheduler" / "scheduler_config.json"
    flow = is_pipeline_dir(pipe_dir) and sched.is_file() and \
        json.loads(sched.read_text()).get("prediction_type") == "flow_prediction"
    return {"kind": "flow", "steps": 25, "guidance": 1.0} if flow else {"kind": "teacher", "steps": 25, "guidance": 5.0}


def sampling_settings(source, steps: int | None = None, guidance: float | None = None) -> tuple[int, float]:
    """(steps, guidance) to sample ``source`` with: the given values, or where they are None, the model's
    recommended ones (a hub id without studio info: SD's 25 steps, guidance 5)."""
    info = read_model_info(source) if Path(str(source)).is_dir() else {"steps": 25, "guidance": 5.0}
    return (int(info["steps"]) if steps is None else steps), (float(info["guidance"]) if guidance is None else guidance)
