"""``studio cda squeeze``: train the teacher classifier on the shared loop (SRe2L "squeeze").

Augmentation as SRe2L's small-dataset squeeze: random crop after 4-pixel padding (black) and a
horizontal flip, per image. The teacher is saved as safetensors with its test top-1.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from studio import StudioError
from studio.data import load_dataset
from studio.devices import process_state
from studio.training.method import Method
from studio.training.config import validate
from studio.training.driver import write_resolved_config
from studio.training.loop import train

from distill.cda.augment import random_flip
from distill.cda.classifier import accuracy, build_classifier, load_weights, save_classifier
from distill.cda.config import SqueezeConfig


def pad_crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Per-image random crop of the original size from the image padded by ``pad`` black pixels."""
    if pad <= 0:
        return x
    H, W = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad), value=-1.0)
    offs = torch.randint(0, 2 * pad + 1, (x.shape[0], 2))
    return torch.stack([padded[k, :, i:i + H, j:j + W] for k, (i, j) in enumerate(offs.tolist())])


class ClassifierTraining(Method):
    name = "squeeze"

    def __init__(self, model, data, pad: int = 4):
        self.model, self.data, self.pad = model, data, pad

    def trainable(self):
        return {"model": self.model}

    def dataset(self):
        return self.data

    def loss(self, modules, batch, rand):
        x = random_flip(pad_crop(batch["pixels"], self.pad), per_sample=True)
        logits = modules["model"](x)
        loss = F.cross_entropy(logits, batch["label"])
        return loss, {"train_acc": float((logits.argmax(1) == batch["label"]).float().mean())}


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
    validate(cfg.train)
    data = labelled(cfg.dataset, cfg.data_dir, cfg.resolution)
    model = build_classifier(cfg.arch, len(data.class_names), cfg.width)
    out, state = Path(cfg.out), process_state()
    if state.is_main_process:
        write_resolved_config(out, cfg)
    seconds = 0.0
    if cfg.weights:
        if not Path(cfg.weights).is_file():
            raise StudioError(f"--weights {cfg.weights}: file not found")
        load_weights(model, cfg.weights, f"--arch {cfg.arch} --width {cfg.width}")
        steps = 0
    else:
        result = train(ClassifierTraining(model, data), cfg.train, out / "train")
        if result.interrupted:
            return None
        model, steps, seconds = result.modules["model"], result.step, round(result.seconds, 1)
    meta = {"arch": cfg.arch, "width": cfg.width, "class_names": list(data.class_names),
            "resolution": cfg.resolution, "channels": _channels(data), "dataset": cfg.dataset, "steps": steps,
            "train_seconds": seconds, "input_range": [-1, 1]}
    test = default_test_set(cfg.dataset, cfg.test_dataset)
    if state.is_main_process:
        if test:
            meta["test_dataset"] = test
            meta["test_top1"] = accuracy(model, labelled(test, cfg.data_dir, cfg.resolution),
                                         device=next(model.parameters()).device)
            print(f"teacher top-1 on {test}: {meta['test_top1']:.2f}%")
        save_classifier(model, out, meta)
    state.wait_for_everyone()
    return out
