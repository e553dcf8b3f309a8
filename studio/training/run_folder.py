"""What may happen to an output folder: runs never destroy work.

A run's ``--out`` holds its artefact (a pipeline, or the files a method names), ``config.json``,
``studio_model.json`` and the training state of its stages (checkpoints, logs). Rules:
- a new run (no ``--resume``) refuses a folder that holds an artefact or a checkpoint; a folder
  with only the ``config.json`` of a run that stopped before its first checkpoint counts as empty;
- ``--overwrite`` replaces the run: it deletes what a studio run writes there and nothing else;
- ``--resume`` compares the resolved config with the saved ``config.json`` and refuses any
  difference that changes the result, naming the options; the loop options listed in
  ``studio.training.config.RESUMABLE`` (``--steps`` to extend a run, logging and checkpoint
  cadence) may change.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import typing
from pathlib import Path

from studio import StudioError
from studio.cli.schema import option_names
from studio.training.checkpoints import list_checkpoints
from studio.models.levers import MemoryLevers
from studio.training.config import RESUMABLE, TrainerConfig

CONFIG = "config.json"
MODEL_INFO = "studio_model.json"
PIPELINE_INDEX = "model_index.json"


def pipeline_entries(out: Path) -> list[str]:
    """model_index.json and the component folders it names."""
    index = out / PIPELINE_INDEX
    if not index.is_file():
        return []
    try:
        names = [k for k in json.loads(index.read_text()) if not k.startswith("_")]
    except (ValueError, AttributeError):
        names = []
    return [PIPELINE_INDEX, *names]


def _artefacts(out: Path, outputs) -> list[str]:
    return [n for n in (PIPELINE_INDEX, *outputs) if (out / n).exists()]


def _checkpoints(out: Path, folders) -> list[Path]:
    return [c for f in folders for c in list_checkpoints(out / f)]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _defaults(cls, prefix: str = "") -> dict:
    """{dotted path: default} of the fields that have one (a value an older config.json did not record)."""
    hints, out = typing.get_type_hints(cls), {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(_defaults(hints[f.name], f"{prefix}{f.name}."))
        elif f.default is not dataclasses.MISSING:
            out[f"{prefix}{f.name}"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f"{prefix}{f.name}"] = f.default_factory()
    return out


def _resumable(cls, prefix: str = "") -> set[str]:
    hints, out = typing.get_type_hints(cls), set()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if tp in (TrainerConfig, MemoryLevers):
            out |= {f"{prefix}{f.name}.{g.name}" for g in dataclasses.fields(tp) if g.name in RESUMABLE}
        elif dataclasses.is_dataclass(tp):
            out |= _resumable(tp, f"{prefix}{f.name}.")
    return out


def differences(saved: dict, config) -> list[str]:
    """'--option saved -> now' for every result-changing setting where ``config`` differs from ``saved``."""
    now = _flat(json.loads(json.dumps(dataclasses.asdict(config), default=str)))
    old = _flat(saved)
    defaults = _flat(json.loads(json.dumps(_defaults(type(config)), default=str)))
    names, skip = option_names(type(config)), _resumable(type(config)) | {"out"}
    diffs = []
    for key, value in now.items():
        if key in skip:
            continue
        before = old.get(key, defaults.get(key, "(not recorded)"))
        if before != value:
            diffs.append(f"{names.get(key, key)} {before} -> {value}")
    return diffs


def _saved_config(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise StudioError(f"{path} is unreadable, so the settings of that run are unknown; pass --overwrite to "
                          "replace the run or choose another --out") from None


def _run_of(checkpoint: Path) -> Path | None:
    """The run folder of a checkpoint: its nearest ancestor holding a config.json."""
    for parent in Path(checkpoint).resolve().parents:
        if (parent / CONFIG).is_file():
            return parent
    return None


def check(out: Path, config, folders, outputs=(), resume: str = "", overwrite: bool = False,
          final_trains: bool = True) -> None:
    """Refuse, with one line, a run that would destroy or silently mix with the work already in ``out``."""
    if overwrite and resume:
        raise StudioError("--overwrite replaces a run and --resume continues one; give only one of them")
    if overwrite:
        return
    artefacts, ckpts = _artefacts(out, outputs), _checkpoints(out, folders)
    held = ", ".join([*artefacts, *(["checkpoints"] if ckpts else [])])
    if not resume:
        if held:
            raise StudioError(f"{out} already holds a run ({held}); continue it with --resume latest, replace it "
                              "with --overwrite, or choose another --out")
        return
    runs = {out.resolve()} | ({_run_of(Path(resume))} - {None} if resume != "latest" else set())
    for run in runs:
        if (run / CONFIG).is_file():
            diffs = differences(_saved_config(run / CONFIG), config)
            if diffs:
                raise StudioError(f"cannot resume {run}: it was trained with other settings ({'; '.join(diffs)}); "
                                  "resume with the saved settings, pass --overwrite to replace it, or choose "
                                  "another --out")
        elif run == out.resolve() and held:
            raise StudioError(f"{out} holds {held} but no {CONFIG}, so its settings are unknown; pass --overwrite "
                              "to replace it or choose another --out")
    if final_trains and artefacts and resume == "latest" and not list_checkpoints(out / folders[-1]):
        raise StudioError(f"{out} holds a finished run ({', '.join(artefacts)}) and no checkpoint to continue from; "
                          "pass --overwrite to train it again or choose another --out")


def clear(out: Path, folders, outputs=()) -> None:
    """Delete what a studio run writes in ``out`` (for ``--overwrite``); any other file stays."""
    names = [CONFIG, MODEL_INFO, *pipeline_entries(out), *outputs, *folders]
    for name in names:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    for name in folders:  # stage folders' parents (e.g. stages/) once empty
        for parent in (out / name).parents:
            if parent == out or not parent.is_relative_to(out):
                break
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
