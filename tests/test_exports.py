"""The method exports write, for the same weights, what the shipped models hold: weights bit for bit,
configs equal (but for ``_name_or_path``, where diffusers records the folder a model was loaded from)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from studio.models.backbone import load_pipeline
from studio.training.loop import TrainResult

MODELS = Path(__file__).resolve().parents[1] / "ui" / "models"
RUN_FILES = ("studio_model.json", "config.json")  # written by the driver, not by the export


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
            if p.is_file() and not (p.parent == root and p.name in RUN_FILES)}


def _config(path: Path) -> dict:
    cfg = json.loads(path.read_text())
    cfg.pop("_name_or_path", None)
    return cfg


@pytest.mark.parametrize("name", ["teacher", "2-rectified-flow", "student"])
def test_export_of_the_shipped_weights_equals_the_shipped_files(name, tmp_path):
    from distill.reflow.objective import DistillObjective, ReflowObjective
    from studio.teacher.objective import UNetStage

    pipe = load_pipeline(MODELS / name)
    if name == "teacher":
        method, modules = UNetStage(pipe, data=None), {"unet": pipe.unet, "text_encoder": pipe.text_encoder}
    else:
        kind = ReflowObjective if name == "2-rectified-flow" else DistillObjective
        method, modules = kind(pipe, SimpleNamespace(prompts=[])), {"unet": pipe.unet}
    method.export(TrainResult(0, False, modules), tmp_path / name)
    _assert_same_files(MODELS / name, tmp_path / name)


def test_export_of_the_shipped_consistency_model_equals_the_shipped_files(tmp_path):
    """ui/models/ict, the app's class-conditional consistency model: c_noise = 0.25 ln sigma has no plain
    diffusers pipeline, so the export is unet/ alone (no model_index.json)."""
    from consistency.model import Precond, load_model
    from consistency.sampling import save_model

    unet, info = load_model(MODELS / "ict", ("consistency",))
    assert len(info["class_names"]) == unet.config.num_class_embeds == 10 and info["noise_scale"] == 0.25
    save_model(unet, tmp_path / "ict", info["num_train_timesteps"], Precond.of(info))
    assert not (tmp_path / "ict" / "model_index.json").exists()
    _assert_same_files(MODELS / "ict", tmp_path / "ict")


def _assert_same_files(shipped_dir: Path, written_dir: Path) -> None:
    shipped, written = _files(shipped_dir), _files(written_dir)
    assert sorted(written) == sorted(shipped)
    for rel, path in written.items():
        if path.suffix == ".safetensors" or rel == "tokenizer/tokenizer.json":
            assert path.read_bytes() == shipped[rel].read_bytes(), rel
        elif rel == "tokenizer/tokenizer_config.json":  # transformers adds its load options on a re-save
            old, new = _config(shipped[rel]), _config(path)
            assert {k: new.get(k) for k in old} == old, rel
        else:
            assert _config(path) == _config(shipped[rel]), rel
