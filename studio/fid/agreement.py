"""Class agreement: the share of class-prompted samples that a classifier assigns to the prompted class.

It is the offline stand-in for the CLIP score that text-to-image distillation papers (InstaFlow,
Liu et al. 2023; DMD2, Yin et al. 2024) report beside FID: prompt adherence, measured by a model that knows the
classes. No CLIP weights are available offline, so the judge is an image classifier the studio trains
itself on the real data (``studio cda squeeze``: for Fashion-MNIST, the CDA teacher). A judge is
only as good as its own accuracy, so every result carries the judge's test top-1 and its weights'
hash; the agreement of the real side, when it is labelled, is computed in the same pass and is the
ceiling a perfect generator would reach (for a test split, it is the judge's test top-1 again).

    agreement = 100 * mean over samples k of [argmax_c judge(x_k) == class(prompt_k)]

Preprocessing: uint8 RGB -> [-1, 1] (the studio's pixel scale); for a judge trained on grayscale
data (``channels`` 1) the channel mean, shown as 3 equal channels as in training; and a bilinear antialiased resize only when the image size differs from the judge's
resolution (the shipped judge is trained at the samples' 32x32, so none is needed there).
Classes are matched by name (``studio.data.imagefolder.folder_name``), so the sample side's class
order may differ from the judge's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from studio import StudioError
from studio.data.imagefolder import folder_name
from studio.fid.extractor import to_uint8_rgb
from studio.models.classifier import WEIGHTS, load_classifier


class ClassJudge:
    """A saved classifier that predicts the class of uint8 images, with its protocol."""

    def __init__(self, path, device="cpu"):
        path = Path(path)
        self.model, self.meta = load_classifier(path)
        self.device = torch.device(device)
        self.model.eval().to(self.device)
        weights = path / WEIGHTS if path.is_dir() else path
        self.sha256_16 = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
        self.class_names = tuple(self.meta["class_names"])
        self.path = str(path)

    def knows(self, class_names) -> bool:
        """Whether every one of ``class_names`` is one of the judge's classes (by folder name)."""
        known = {folder_name(c) for c in self.class_names}
        return bool(class_names) and all(folder_name(c) in known for c in class_names)

    @property
    def protocol(self) -> dict:
        m = self.meta
        return {"classifier": self.path, "sha256_16": self.sha256_16, "arch": m.get("arch"),
                "width": m.get("width"), "resolution": m.get("resolution"), "channels": m.get("channels", 3),
                "trained_on": m.get("dataset"), "test_dataset": m.get("test_dataset"),
                "test_top1": m.get("test_top1")}

    @torch.no_grad()
    def __call__(self, images) -> np.ndarray:
        """Predicted class index (into ``class_names``) of each image of a batch."""
        x = to_uint8_rgb(images).to(self.device).float() / 127.5 - 1.0
        if self.meta.get("channels", 3) == 1:  # trained on grayscale, shown as 3 equal channels
            x = x.mean(1, keepdim=True).expand(-1, 3, -1, -1)
        res = int(self.meta["resolution"])
        if x.shape[-2:] != (res, res):
            x = F.interpolate(x, size=(res, res), mode="bilinear", antialias=True, align_corners=False)
        return self.model(x).argmax(1).cpu().numpy()


def check_classes(class_names, judge_names) -> dict[str, int]:
    """The judge's index of each folder name, once every one of ``class_names`` is known to the judge."""
    known = {folder_name(c): j for j, c in enumerate(judge_names)}
    missing = [c for c in class_names if folder_name(c) not in known]
    if missing:
        raise StudioError(f"the classifier does not know the class(es) {', '.join(map(repr, missing))}; use a "
                          f"classifier trained on these classes (it knows {', '.join(judge_names)})")
    return known


def class_agreement(predicted, labels, class_names, judge_names) -> dict:
    """Agreement (%) overall and per class of predictions (judge indices) with labels (indices into
    ``class_names``, the source's classes), matched to the judge's classes by name (as folder names:
    a class subfolder 't-shirt-top' is the class 't-shirt/top')."""
    known = check_classes(class_names, judge_names)
    to_judge = np.array([known[folder_name(c)] for c in class_names], dtype=np.int64)
    wanted = to_judge[np.asarray(labels, dtype=np.int64)]
    hit = np.asarray(predicted) == wanted
    per_class = {name: round(100.0 * float(hit[wanted == j].mean()), 3)
                 for name, j in zip(class_names, to_judge) if (wanted == j).any()}
    return {"agreement": 100.0 * float(hit.mean()), "n": int(len(hit)), "per_class": per_class}
