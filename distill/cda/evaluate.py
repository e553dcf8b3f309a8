"""``studio cda eval``: relabel and evaluate (SRe2L "relabel", Sec. 3.3; CDA Sec. 4).

A student is trained from scratch on a (distilled or baseline) image set with soft labels from
the live teacher, on the shared loop:

    loss = KL( softmax(teacher(A(x)) / T) || softmax(student(A(x)) / T) )     (batch mean)

as in SRe2L's relabel code (no T^2 factor), with A = per-image RandomResizedCrop (scale
(--crop-min-scale, 1)), flip, then mixup or CutMix; the teacher labels the very images the
student sees. Top-1 is measured on the real test set. ``--data random`` (a real subset with the
same IPC) and ``--data full`` are the baselines, with the same soft-label training.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from studio import StudioError
from studio.data.captioned import CaptionedImages
from studio.devices import process_state
from studio.training.method import Method
from studio.training.config import validate
from studio.training.driver import write_resolved_config
from studio.training.loop import train

from distill.cda.augment import MIX_MODES, mix, random_flip, random_resized_crop
from distill.cda.classifier import accuracy, build_classifier, load_classifier, save_classifier
from distill.cda.config import EvalConfig
from distill.cda.recover import load_distilled
from distill.cda.squeeze import default_test_set, labelled

RESULT = "result.json"


def soft_label_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p_teacher || p_student) at temperature T, summed over classes, averaged over the batch."""
    log_p = F.log_softmax(student_logits.float() / temperature, dim=1)
    q = F.softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(log_p, q, reduction="batchmean")


class SoftLabelTraining(Method):
    name = "relabel"

    def __init__(self, student, teacher, data, cfg: EvalConfig):
        self.student, self.teacher, self.data, self.cfg = student, teacher.eval().requires_grad_(False), data, cfg

    def trainable(self):
        return {"student": self.student}

    def dataset(self):
        return self.data

    def setup(self, device):
        self.teacher.to(device)

    def loss(self, modules, batch, rand):
        x = batch["pixels"]
        x = random_flip(random_resized_crop(x, x.shape[-1], (self.cfg.crop_min_scale, 1.0), per_sample=True),
                        per_sample=True)
        x = mix(x, self.cfg.mix)
        with torch.no_grad():
            target = self.teacher(x)
        loss = soft_label_kl(modules["student"](x), target, self.cfg.temperature)
        return loss, {}


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
    validate(cfg.train)
    if not cfg.teacher or not cfg.data:
        raise StudioError("give --data (folder, random or full) and --teacher")
    if cfg.mix not in MIX_MODES or cfg.temperature <= 0 or not 0 < cfg.crop_min_scale <= 1:
        raise StudioError(f"--mix one of {', '.join(MIX_MODES)}; --temperature > 0; --crop-min-scale in (0, 1]")
    teacher, meta = load_classifier(cfg.teacher)
    data, what = _training_set(cfg, meta)
    test_spec = default_test_set(meta.get("dataset", cfg.dataset), cfg.test_dataset)
    if not test_spec:
        raise StudioError("give --test-dataset (a labelled folder): the teacher was not trained on fashion-mnist")
    test = labelled(test_spec, cfg.data_dir, meta["resolution"])
    arch, width = cfg.arch or meta["arch"], cfg.width or meta.get("width", 64)
    torch.manual_seed(cfg.train.seed)
    student = build_classifier(arch, len(meta["class_names"]), width)
    out, state = Path(cfg.out), process_state()
    if state.is_main_process:
        write_resolved_config(out, cfg)
    result = train(SoftLabelTraining(student, teacher, data, cfg), cfg.train, out / "train")
    if result.interrupted:
        return None
    student = result.modules["student"]
    report = {"data": what, "images": len(data), "teacher": cfg.teacher, "student_arch": arch,
              "student_width": width, "steps": result.step, "train_seconds": round(result.seconds, 1),
              "test_dataset": test_spec, "config": asdict(cfg)}
    if state.is_main_process:
        report["top1"] = accuracy(student, test, device=next(student.parameters()).device)
        print(f"{what}: student top-1 on {test_spec}: {report['top1']:.2f}%")
        save_classifier(student, out, {"arch": arch, "width": width, "class_names": meta["class_names"],
                                       "resolution": meta["resolution"], "dataset": meta.get("dataset", ""),
                                       "test_top1": report["top1"], "trained_on": what})
        tmp = out / (RESULT + ".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        os.replace(tmp, out / RESULT)
    state.wait_for_everyone()
    return report
