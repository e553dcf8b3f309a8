"""The driver: one run of a method, from its resolved config to its artefact.

    validate the config (schema) -> check --out (``run_folder``: never destroy work)
    -> build the method (loads its data: bad input fails before anything is written)
    -> write config.json -> train each stage on the shared loop -> export on the main process
    -> write studio_model.json -> wait for every process

Every training command runs through :func:`run`: ``teacher train``, ``reflow train``,
``reflow distill``, ``ict train``, ``cda squeeze`` and ``cda eval``. A config has ``out`` (the run
folder) and ``train`` (its ``TrainerConfig``, whose ``--resume`` and ``--overwrite`` apply to the
whole run). A run of several stages (the teacher: VAE, then UNet) lists them in order; a finished
stage (its ``done`` file exists) is skipped when the run resumes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from studio.cli.schema import validate
from studio.devices import process_state
from studio.files import write_json
from studio.models.model_info import write_model_info
from studio.training import run_folder
from studio.training.checkpoints import resume_point
from studio.training.config import TrainerConfig
from studio.training.loop import TrainResult, train
from studio.training.method import Method


@dataclass
class Stage:
    """One training of a run: ``folder`` (below OUT) holds its checkpoints and logs; ``build`` makes
    its method when the stage starts (after the previous stage's export); the method's export writes
    into ``export_to`` (below OUT; "" is OUT itself); ``done`` names a file below OUT that marks the
    stage finished. ``train`` None: nothing to train, the built modules are exported as they are."""

    folder: str
    build: Callable[[], Method]
    train: TrainerConfig | None
    export_to: str = ""
    done: str = ""


def run(config, stages: list[Stage], outputs: tuple[str, ...] = ()) -> Path | None:
    """Run ``stages`` of ``config``; returns the run folder, or None if SIGTERM interrupted it.
    ``outputs``: the artefact's files at the top of OUT besides a pipeline (which is found by its
    model_index.json), e.g. a classifier's; ``--overwrite`` deletes them, a new run refuses them."""
    validate(config)
    out, tcfg = Path(config.out), config.train
    folders = [s.folder for s in stages]
    run_folder.check(out, config, folders, outputs, tcfg.resume, tcfg.overwrite, stages[-1].train is not None)
    state = process_state()
    pending = [s for s in stages if tcfg.overwrite or not (s.done and (out / s.done).exists())]
    for stage in pending:  # a checkpoint past --steps is refused before anything is written
        if stage.train is not None and not tcfg.overwrite:
            resume_point(out / stage.folder, stage.train.resume, stage.train.steps)
    method = pending[0].build()  # the last stage has no done file, so pending is never empty
    state.wait_for_everyone()  # every process has read the folder before it changes
    if state.is_main_process:
        if tcfg.overwrite:
            run_folder.clear(out, folders, outputs)
        write_json(out / run_folder.CONFIG, asdict(config))
    state.wait_for_everyone()
    for i, stage in enumerate(pending):
        method = method if i == 0 else stage.build()
        if stage.train is None:
            result = TrainResult(0, False, method.trainable())
        else:
            result = train(method, stage.train, out / stage.folder)
            if result.interrupted:
                return None
        if state.is_main_process:
            method.export(result, out / stage.export_to)
        state.wait_for_everyone()
    info = method.model_info()
    if state.is_main_process and info is not None:
        write_model_info(out, **info)
    state.wait_for_everyone()
    return out
