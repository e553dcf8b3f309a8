"""Training checkpoints: ``OUT/checkpoints/step-00000100``, written atomically, oldest pruned.

A checkpoint is accelerate's ``save_state`` directory (model weights as safetensors,
optimizer, LR scheduler) plus ``ema.safetensors`` and ``trainer_state.json``. Only what trains is
saved: a module's frozen parameters (a LoRA's base weights, say) are left out, since the method
rebuilds them from its init (:func:`save_trainable_only`); a resume checks that the checkpoint
holds exactly the trained weights of this run. It is written
to ``*.tmp`` and renamed only when complete, so a kill never leaves a half checkpoint that
``--resume latest`` could pick. Nothing here unpickles custom objects: the EMA and the step
are stored as safetensors and JSON, not through ``register_for_checkpointing``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from studio import StudioError

PREFIX = "step-"
_REMEDY = "delete it to resume from the one before, or pass --overwrite to start again"
STATE_FILE = "trainer_state.json"
EMA_FILE = "ema.safetensors"


def checkpoint_root(out_dir) -> Path:
    return Path(out_dir) / "checkpoints"


def list_checkpoints(out_dir) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(out_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and not p.name.endswith(".tmp")
             and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def resolve_resume(out_dir, resume: str) -> Path | None:
    """'' -> None; 'latest' -> newest complete checkpoint (None if there is none); else a path."""
    if not resume:
        return None
    if resume == "latest":
        ckpts = list_checkpoints(out_dir)
        return ckpts[-1] if ckpts else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise StudioError(f"--resume {resume}: not a complete checkpoint directory (no {STATE_FILE})")
    return path


def resume_point(out_dir, resume: str, steps: int) -> Path | None:
    """The checkpoint ``--resume`` names (see :func:`resolve_resume`), refused if it is past ``steps``."""
    ckpt = resolve_resume(out_dir, resume)
    if ckpt is not None:
        reached = int(read_state(ckpt)["step"])
        if reached > steps:
            raise StudioError(f"checkpoint {ckpt} is at step {reached}, past --steps {steps}; pass --steps "
                              f"{reached} or more to resume it (or --overwrite to start again)")
    return ckpt


def read_state(ckpt: Path) -> dict:
    try:
        return json.loads((Path(ckpt) / STATE_FILE).read_text())
    except (OSError, ValueError) as e:
        raise StudioError(f"checkpoint {ckpt} is unreadable ({STATE_FILE}: {type(e).__name__}); {_REMEDY}") from None


def _frozen(model) -> set[str]:
    return {n for n, p in model.named_parameters() if not p.requires_grad}


def _expected(model) -> set[str]:
    return set(model.state_dict()) - _frozen(model)


def save_trainable_only(accelerator) -> None:
    """Make ``save_state`` write each model's trained parameters and buffers, not its frozen ones."""
    def hook(models, weights, _output_dir):
        for i, m in enumerate(models):
            frozen = _frozen(accelerator.unwrap_model(m))
            if frozen:
                weights[i] = {k: v for k, v in weights[i].items() if k not in frozen}

    accelerator.register_save_state_pre_hook(hook)


def _model_file(ckpt: Path, i: int) -> Path:
    return ckpt / (f"model_{i}.safetensors" if i else "model.safetensors")  # accelerate's names


def _check_weights(ckpt: Path, models: list) -> None:
    from safetensors import safe_open

    for i, m in enumerate(models):
        with safe_open(str(_model_file(ckpt, i)), "pt") as f:
            saved = set(f.keys())
        want = _expected(m)
        if saved != want:
            odd = sorted(saved ^ want)[0]
            raise StudioError(f"checkpoint {ckpt} holds other trained weights than this run ({len(want - saved)} "
                              f"missing, {len(saved - want)} extra, e.g. {odd}); were the LoRA settings changed?")


def save_checkpoint(accelerator, out_dir, step: int, ema=None, limit: int = 3, seconds: float = 0.0) -> Path:
    """Collective: every process calls it. Returns the final checkpoint path. ``seconds``: training
    time spent to reach ``step``, over all resumed segments (kept in the state file)."""
    root = checkpoint_root(out_dir)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / (final.name + ".tmp")
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if ema is not None:
            save_file(ema.state_dict(), str(tmp / EMA_FILE))
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, "num_processes": accelerator.num_processes,
                                                   "seconds": round(seconds, 3)}))
        if final.exists():  # the same step saved again (e.g. SIGTERM right after a periodic save)
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(out_dir)[:-limit] if limit > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, ckpt: Path, models: list, ema=None) -> int:
    """Restore the trained weights of ``models`` (unwrapped, in prepare order) and the optimizers
    (accelerate), then the EMA; returns the step. A checkpoint that does not load (a corrupt or cut
    file, or one from other modules) is a one-line error."""
    step = int(read_state(ckpt)["step"])
    if ema is not None and not (ckpt / EMA_FILE).is_file():
        raise StudioError(f"checkpoint {ckpt} has no {EMA_FILE} but this run uses EMA; pass --ema-decay 0")
    try:
        _check_weights(ckpt, models)
        accelerator.load_state(str(ckpt), strict=False)  # strict=False: the frozen weights are not saved
        if ema is not None:
            ema.load_state_dict(load_file(str(ckpt / EMA_FILE)))
    except StudioError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors, torch and accelerate raise many types for a bad file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise StudioError(f"cannot resume from checkpoint {ckpt}: {first}; {_REMEDY}") from None
    return step
