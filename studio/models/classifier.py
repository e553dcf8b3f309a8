"""Image classifiers the studio trains itself: construction, safetensors save/load, test accuracy.

They serve as CDA's teacher and students (``distill.cda``) and as the judge of class agreement
(``studio.fid.agreement``).

``resnet18-small`` is torchvision's ResNet-18 with the stem CDA/SRe2L use for small images
(3x3 stride-1 ``conv1``, no max-pool). ``--width`` scales its channels (64: the paper's model;
smaller widths are for CPU budgets). ``torchvision:NAME`` is any torchvision classifier
(``torchvision.models.get_model``), untouched. Inputs are images in [-1, 1] (the studio's
pixel scale), 3 channels.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from studio import StudioError
from studio.files import atomic_path, write_json

WEIGHTS = "classifier.safetensors"
META = "classifier.json"


def build_classifier(arch: str, num_classes: int, width: int = 64) -> nn.Module:
    import torchvision
    from torchvision.models.resnet import BasicBlock, ResNet

    if num_classes < 2:
        raise StudioError(f"a classifier needs at least 2 classes, got {num_classes}")
    if arch == "resnet18-small":
        if width < 4 or width % 4:
            raise StudioError(f"--width must be a multiple of 4 and at least 4, got {width}")
        model = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        if width != 64:
            _rewidth(model, BasicBlock, width, num_classes)
        model.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
        return model
    if arch.startswith("torchvision:"):
        name = arch.split(":", 1)[1]
        if name not in torchvision.models.list_models(module=torchvision.models):
            raise StudioError(f"unknown torchvision classifier {name!r}; see torchvision.models.list_models()")
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    raise StudioError(f"unknown --arch {arch!r}: use resnet18-small or torchvision:NAME (e.g. torchvision:resnet50)")


def _rewidth(model, block, width: int, num_classes: int) -> None:
    """Rebuild ResNet-18's stages with channels w, 2w, 4w, 8w (torchvision fixes w = 64), with
    torchvision's initialisation (Kaiming-normal fan-out convs, BN weight 1 and bias 0)."""
    model.inplanes = width
    model.bn1 = nn.BatchNorm2d(width)
    model.layer1 = model._make_layer(block, width, 2)
    model.layer2 = model._make_layer(block, 2 * width, 2, stride=2)
    model.layer3 = model._make_layer(block, 4 * width, 2, stride=2)
    model.layer4 = model._make_layer(block, 8 * width, 2, stride=2)
    model.fc = nn.Linear(8 * width, num_classes)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def save_classifier(model: nn.Module, out_dir, meta: dict) -> Path:
    """``classifier.safetensors`` + ``classifier.json`` (arch, width, classes, resolution), atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    write_json(out / META, meta)
    return out


def read_meta(path) -> dict:
    path = Path(path)
    meta_file = path / META if path.is_dir() else path.with_name(META)
    if not meta_file.is_file():
        raise StudioError(f"{path}: no {META} beside the weights; a classifier comes from `studio cda squeeze`")
    return json.loads(meta_file.read_text())


def load_classifier(path) -> tuple[nn.Module, dict]:
    """A classifier saved by :func:`save_classifier` (a directory, or its .safetensors file)."""
    path = Path(path)
    weights = path / WEIGHTS if path.is_dir() else path
    if not weights.is_file():
        raise StudioError(f"classifier weights not found: {weights}")
    meta = read_meta(path)
    model = build_classifier(meta["arch"], len(meta["class_names"]), meta.get("width", 64))
    load_weights(model, weights, f"{meta['arch']} (width {meta.get('width', 64)})")
    return model, meta


def load_weights(model: nn.Module, weights, what: str) -> None:
    """Load a safetensors state dict into ``model`` or stop with a one-line error."""
    try:
        state = load_file(str(weights))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise StudioError(f"cannot read {weights}: {str(e).splitlines()[0]}") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError:  # size mismatches
        missing, unexpected = ["(tensor shapes differ)"], []
    if missing or unexpected:
        raise StudioError(f"{weights} does not fit {what}: {len(missing)} missing or mis-shaped, "
                          f"{len(unexpected)} unexpected tensors")


@torch.no_grad()
def accuracy(model: nn.Module, data, device="cpu", batch_size: int = 500) -> float:
    """Top-1 accuracy (%) of ``model`` on a CaptionedImages set."""
    was_training = model.training
    model.eval()
    correct = 0
    for lo in range(0, len(data), batch_size):
        idx = list(range(lo, min(lo + batch_size, len(data))))
        batch = data.batch(idx)
        pred = model(batch["pixels"].to(device)).argmax(1).cpu()
        correct += int((pred == batch["label"]).sum())
    model.train(was_training)
    return 100.0 * correct / len(data)
