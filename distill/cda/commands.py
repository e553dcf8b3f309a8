"""The ``studio cda ...`` commands (registered through the ``studio.commands`` entry point).

squeeze (train the teacher classifier) -> recover (synthesise images per class from its BN
statistics; ``distill.cda.recover``) -> eval (a student from scratch on a set, with the live
teacher's soft labels; top-1 on the real test split). squeeze and eval run through the driver
(``studio.training.driver``); their objectives are in ``distill.cda.objective``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from studio import StudioError
from studio.data import load_dataset
from studio.data.captioned import CaptionedImages
from studio.training.driver import Stage, run

from studio.models.classifier import META, WEIGHTS, build_classifier, load_classifier, load_weights
from distill.cda.config import EvalConfig, RecoverConfig, SqueezeConfig
from distill.cda.objective import RESULT, ClassifierTraining, SoftLabelTraining
from distill.cda.recover import load_distilled, run_recover

OUTPUTS = (WEIGHTS, META, RESULT)


def _channels(data) -> int:
    """1 when every training image is grayscale (Fashion-MNIST, or a folder of gray images), else 3."""
    imgs = data.images
    if imgs.shape[-1] == 1:
        return 1
    return 1 if bool((imgs[..., :1] == imgs).all()) else 3


def default_test_set(dataset: str, test_dataset: str) -> str:
    if test_dataset:
        return test_dataset
    return "fashion-mnist:test" if dataset.partition(":")[0] == "fashion-mnist" else ""


def labelled(spec: str, data_dir: str, resolution: int):
    data = load_dataset(spec, data_dir=data_dir or None, resolution=resolution)
    if not data.class_names or (data.labels < 0).any():
        raise StudioError(f"{spec} has no class labels: use fashion-mnist or a folder with one subfolder per class")
    return data


def run_squeeze(cfg: SqueezeConfig) -> Path | None:
    """The teacher classifier, trained (or read from ``--weights``) and saved with its test top-1."""
    def build():
        data = labelled(cfg.dataset, cfg.data_dir, cfg.resolution)
        model = build_classifier(cfg.arch, len(data.class_names), cfg.width)
        if cfg.weights:
            if not Path(cfg.weights).is_file():
                raise StudioError(f"--weights {cfg.weights}: file not found")
            load_weights(model, cfg.weights, f"--arch {cfg.arch} --width {cfg.width}")
        test = default_test_set(cfg.dataset, cfg.test_dataset)
        meta = {"arch": cfg.arch, "width": cfg.width, "class_names": list(data.class_names),
                "resolution": cfg.resolution, "channels": _channels(data), "dataset": cfg.dataset,
                "input_range": [-1, 1], **({"test_dataset": test} if test else {})}
        return ClassifierTraining(model, data, meta, labelled(test, cfg.data_dir, cfg.resolution) if test else None)

    return run(cfg, [Stage("train", build, None if cfg.weights else cfg.train)], OUTPUTS)


def random_subset(data: CaptionedImages, ipc: int, seed: int) -> CaptionedImages:
    """``ipc`` real images of every class, drawn without replacement with ``seed``."""
    rng = np.random.default_rng(seed)
    picks = []
    for k in range(len(data.class_names)):
        idx = np.flatnonzero(data.labels == k)
        if len(idx) < ipc:
            raise StudioError(f"class {data.class_names[k]!r} has {len(idx)} images, fewer than --ipc {ipc}")
        picks.append(np.sort(rng.choice(idx, ipc, replace=False)))
    sel = np.concatenate(picks)
    return CaptionedImages(data.images[sel], data.labels[sel], [data.captions[i] for i in sel],
                           data.class_names, f"{data.name} random {ipc}/class")


def _training_set(cfg: EvalConfig, meta: dict) -> tuple[CaptionedImages, str]:
    res = meta["resolution"]
    if cfg.data in ("random", "full"):
        real = labelled(cfg.dataset, cfg.data_dir, res)
        if list(real.class_names) != list(meta["class_names"]):
            raise StudioError(f"{cfg.dataset} classes differ from the teacher's")
        if cfg.data == "full":
            return real, f"full {cfg.dataset}"
        if cfg.ipc < 1:
            raise StudioError("--data random needs --ipc N (images per class), e.g. --ipc 10")
        return random_subset(real, cfg.ipc, cfg.train.seed), f"random real subset, {cfg.ipc}/class"
    if not Path(cfg.data).is_dir():
        raise StudioError(f"--data {cfg.data!r}: not a folder; give a distilled image folder, random or full")
    data = load_distilled(cfg.data, meta["class_names"], res, ipc=cfg.ipc)
    return data, f"distilled {cfg.data}" + (f", first {cfg.ipc}/class" if cfg.ipc else "")


def run_eval(cfg: EvalConfig) -> dict | None:
    """Relabel and evaluate: a student trained on ``--data`` with soft labels; returns result.json's report."""
    def build():
        teacher, meta = load_classifier(cfg.teacher)
        data, what = _training_set(cfg, meta)
        test_spec = default_test_set(meta.get("dataset", cfg.dataset), cfg.test_dataset)
        if not test_spec:
            raise StudioError("give --test-dataset (a labelled folder): the teacher was not trained on fashion-mnist")
        test = labelled(test_spec, cfg.data_dir, meta["resolution"])
        arch, width = cfg.arch or meta["arch"], cfg.width or meta.get("width", 64)
        torch.manual_seed(cfg.train.seed)
        student = build_classifier(arch, len(meta["class_names"]), width)
        report = {"data": what, "images": len(data), "teacher": cfg.teacher, "student_arch": arch,
                  "student_width": width, "test_dataset": test_spec, "config": asdict(cfg)}
        student_meta = {"arch": arch, "width": width, "class_names": meta["class_names"],
                        "resolution": meta["resolution"], "dataset": meta.get("dataset", ""), "trained_on": what}
        return SoftLabelTraining(student, teacher, data, cfg, test, student_meta, report)

    out = run(cfg, [Stage("train", build, cfg.train)], OUTPUTS)
    return None if out is None else json.loads((out / RESULT).read_text())


def commands() -> dict:
    return {
        ("cda", "squeeze"): (SqueezeConfig, run_squeeze, "train the teacher classifier (SRe2L squeeze)"),
        ("cda", "recover"): (RecoverConfig, run_recover, "synthesise images per class from the teacher (CDA)"),
        ("cda", "eval"): (EvalConfig, run_eval, "train a student on a set with the teacher's soft labels; top-1"),
    }
