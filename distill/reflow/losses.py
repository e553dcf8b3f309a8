"""Distances D(prediction, target) for the one-step distillation (InstaFlow, Liu et al. 2023, sec. 3).

- ``l2``: mean squared error on latents (InstaFlow's first stage).
- ``huber``: pseudo-Huber sqrt(||d||^2 + c^2) - c on each sample's whole vector,
  c = 0.00054 sqrt(dim) (Song & Dhariwal 2023, sec. 3.3; ``studio.diffusion.losses``), batch mean;
  less sensitive to outlier pairs.
- ``lpips``: LPIPS-VGG (Zhang et al. 2018) between VAE-decoded images (InstaFlow's final
  stage). The VGG16 ImageNet trunk cannot be downloaded here, so it is read from
  ``--lpips-weights`` (safetensors or .pth state dict) or torchvision's hub cache file
  ``vgg16-397923af.pth``; without either the command stops with a one-line error.
"""

from __future__ import annotations

from pathlib import Path

import torch

from studio import StudioError
from studio.diffusion.losses import pseudo_huber

VGG16_FILE = "vgg16-397923af.pth"
_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))  # lpips' pn.vgg16 slices of tv.vgg16().features


def l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((pred.float() - target.float()) ** 2)


def huber(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The batch mean of the per-sample pseudo-Huber distance."""
    return torch.mean(pseudo_huber(pred, target))


def _vgg_state(path: str) -> dict:
    p = Path(path).expanduser()
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    return torch.load(p, map_location="cpu", weights_only=True)


def find_vgg_weights(explicit: str = "") -> Path:
    """--lpips-weights, else torchvision's cache; a one-line error names both."""
    if explicit:
        if not Path(explicit).expanduser().is_file():
            raise StudioError(f"--lpips-weights {explicit}: file not found")
        return Path(explicit).expanduser()
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
    if cached.is_file():
        return cached
    raise StudioError(f"--loss lpips needs the VGG16 ImageNet weights: pass --lpips-weights FILE or put {VGG16_FILE} "
                      f"in {cached.parent}; or use --loss l2|huber")


def make_lpips(weights: str = "") -> torch.nn.Module:
    """LPIPS-VGG with its calibrated linear layers (shipped in the lpips wheel) and a local VGG16 trunk."""
    path = find_vgg_weights(weights)
    try:
        import lpips
    except ImportError:
        raise StudioError("--loss lpips needs the `lpips` package: pip install lpips") from None
    model = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)  # random trunk: nothing is downloaded
    try:
        state = _vgg_state(str(path))
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise StudioError(f"cannot read VGG16 weights {path}: {e}") from None
    mapped = {}
    for k, (lo, hi) in enumerate(_SLICES, start=1):
        for x in range(lo, hi):
            for name in ("weight", "bias"):
                key = f"features.{x}.{name}"
                if key in state:
                    mapped[f"net.slice{k}.{x}.{name}"] = state[key]
    expected = {k for k in model.state_dict() if k.startswith("net.")}
    if set(mapped) != expected:
        raise StudioError(f"{path} is not a torchvision VGG16 state dict (features.N.weight/bias)")
    model.load_state_dict(mapped, strict=False)
    return model.eval().requires_grad_(False)


class LPIPSLoss:
    """LPIPS between VAE decodes of latents; gradients flow through the (frozen) decoder."""

    def __init__(self, vae, weights: str = ""):
        self.vae = vae
        self.net = make_lpips(weights)

    def to(self, device):
        self.net.to(device)
        return self

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        scale = self.vae.config.scaling_factor
        latents = torch.cat([pred, target]).to(self.vae.dtype) / scale  # the decoder may be held in bf16/fp16
        images = self.vae.decode(latents, return_dict=False)[0].float()
        a, b = images.chunk(2)
        return self.net(a, b.detach()).mean()  # LPIPS expects [-1, 1], the VAE's output range


def make_distance(name: str, vae=None, lpips_weights: str = ""):
    if name == "l2":
        return l2
    if name == "huber":
        return huber
    if name == "lpips":
        return LPIPSLoss(vae, lpips_weights)
    raise StudioError(f"unknown --loss {name!r}; choose l2, huber or lpips")
