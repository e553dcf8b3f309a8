"""The three objectives of CDA / SRe2L on the shared loop, each with its export.

- :class:`ClassifierTraining` ("squeeze", SRe2L Sec. 3.1): cross-entropy of the teacher
  classifier on real images, with SRe2L's small-dataset augmentation (random crop after 4-pixel
  black padding and a horizontal flip, per image). Export: the teacher (safetensors +
  classifier.json) with its test top-1.
- :class:`Recovery` ("recover", SRe2L Sec. 3.2; CDA Sec. 3): synthetic pixels x optimised for
      loss = CE(teacher(A(x)), y) + r_bn * R_BN
  with A = RandomResizedCrop(scale=(a(t), 1)) (a(t): ``distill.cda.curriculum``), a flip and a
  random roll; pixels clamped to [-1, 1] after every step (the authors' ``clip``). The unit loop
  in ``distill.cda.recover`` writes its images.
- :class:`SoftLabelTraining` ("relabel", SRe2L Sec. 3.3; CDA Sec. 4): a student from scratch with
      loss = KL( softmax(teacher(A(x)) / T) || softmax(student(A(x)) / T) )     (batch mean)
  as in SRe2L's relabel code (no T^2 factor), A = per-image RandomResizedCrop (scale
  (--crop-min-scale, 1)), flip, then mixup or CutMix; the teacher labels the very images the
  student sees. Export: the student and ``result.json`` with its test top-1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from studio.files import write_json
from studio.training.method import Method

from distill.cda.augment import mix, pad_crop, random_flip, random_resized_crop, roll_jitter
from distill.cda.bn_matching import BNStatsLoss
from studio.models.classifier import accuracy, save_classifier
from distill.cda.curriculum import MAX_SCALE, crop_scale_lower_bound

RESULT = "result.json"


class ClassifierTraining(Method):
    name = "squeeze"

    def __init__(self, model, data, meta: dict, test=None, pad: int = 4):
        self.model, self.data, self.meta, self.test, self.pad = model, data, meta, test, pad

    def trainable(self):
        return {"model": self.model}

    def dataset(self):
        return self.data

    def loss(self, modules, batch, rand):
        x = random_flip(pad_crop(batch["pixels"], self.pad), per_sample=True)
        logits = modules["model"](x)
        loss = F.cross_entropy(logits, batch["label"])
        return loss, {"train_acc": float((logits.argmax(1) == batch["label"]).float().mean())}

    def export(self, result, out):
        model = result.modules["model"]
        meta = {**self.meta, "steps": result.step, "train_seconds": round(result.seconds, 1)}
        if self.test is not None:
            meta["test_top1"] = accuracy(model, self.test, device=next(model.parameters()).device)
            print(f"teacher top-1 on {meta['test_dataset']}: {meta['test_top1']:.2f}%")
        save_classifier(model, out, meta)


class SyntheticImages(nn.Module):
    """The optimised pixels, (B, C, H, W) with C = 1 (shown to the teacher as 3 equal channels) or 3."""

    def __init__(self, init: torch.Tensor):
        super().__init__()
        self.pixels = nn.Parameter(init.clone())

    def forward(self) -> torch.Tensor:
        return self.pixels.expand(-1, 3, -1, -1) if self.pixels.shape[1] == 1 else self.pixels


class _Targets:
    """The loop's dataset: every batch is the unit's class labels."""

    def __init__(self, targets: torch.Tensor):
        self.targets = targets

    def __len__(self) -> int:
        return 1

    def batch(self, indices) -> dict:
        return {"target": self.targets}


class Recovery(Method):
    name = "recover"

    def __init__(self, teacher: nn.Module, init: torch.Tensor, targets: torch.Tensor, cfg):
        self.teacher, self.cfg = teacher.eval().requires_grad_(False), cfg
        self.images = SyntheticImages(init)
        self.targets = targets
        self.bn = BNStatsLoss(self.teacher, cfg.first_bn_multiplier)
        self.step = 0
        self.last: dict = {}  # losses of the last step (empty if a finished unit is only re-read)

    def trainable(self):
        return {"images": self.images}

    def dataset(self):
        return _Targets(self.targets)

    def setup(self, device):
        self.teacher.to(device)

    def on_step_start(self, step):
        self.step = step

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        lo = crop_scale_lower_bound(self.cfg.curriculum, self.step, self.cfg.iterations, self.cfg.milestone)
        x = random_resized_crop(x, x.shape[-1], (lo, MAX_SCALE))
        return roll_jitter(random_flip(x), self.cfg.jitter)

    def loss(self, modules, batch, rand):
        logits = self.teacher(self.augment(modules["images"]()))
        ce = F.cross_entropy(logits.float(), batch["target"])
        bn = self.bn.value()
        return ce + self.cfg.r_bn * bn, {"ce": float(ce.detach()), "bn": float(bn.detach())}

    def on_step_end(self, step, logs):
        with torch.no_grad():
            self.images.pixels.clamp_(-1.0, 1.0)
        self.last = logs


def soft_label_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(p_teacher || p_student) at temperature T, summed over classes, averaged over the batch."""
    log_p = F.log_softmax(student_logits.float() / temperature, dim=1)
    q = F.softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(log_p, q, reduction="batchmean")


class SoftLabelTraining(Method):
    name = "relabel"

    def __init__(self, student, teacher, data, cfg, test=None, meta: dict | None = None, report: dict | None = None):
        self.student, self.teacher, self.data, self.cfg = student, teacher.eval().requires_grad_(False), data, cfg
        self.test, self.meta, self.report = test, meta or {}, report or {}

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

    def export(self, result, out):
        student = result.modules["student"]
        top1 = accuracy(student, self.test, device=next(student.parameters()).device)
        print(f"{self.report['data']}: student top-1 on {self.report['test_dataset']}: {top1:.2f}%")
        save_classifier(student, out, {**self.meta, "test_top1": top1})
        write_json(out / RESULT, {**self.report, "steps": result.step, "train_seconds": round(result.seconds, 1),
                                  "top1": top1})
