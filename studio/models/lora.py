"""LoRA adapters on a diffusers UNet through peft, the library diffusers' own LoRA training uses.

LoRA (Hu et al. 2021, eq. 3) keeps a target layer's weight W frozen and learns
W + (alpha / r) B A with A (r x in) and B (out x r); B starts at zero, so training starts
exactly at the base model (sec. 4.1). A starts Gaussian with std 1/r, peft's
``init_lora_weights="gaussian"``, as diffusers' LoRA training scripts set it.

Composition: an adapter's update is additive. A LoRA student trained on a merged 2-RF (whose own
adapter D1 was folded into W) computes W + D1 + D2; loading the 2-RF's adapter and then the
student's adapter on the base pipeline gives the same weights (docs/sd.md).
"""

from __future__ import annotations

from pathlib import Path

import torch

from studio import StudioError
from studio.files import atomic_path

ADAPTER = "default"  # peft's adapter name; diffusers' LoRA files do not record it
LORA_DIR = "lora"  # the adapter-only export, below a run folder


def add_lora(unet, rank: int, alpha: float, targets: tuple[str, ...], seed: int) -> int:
    """Freeze ``unet`` and inject a LoRA adapter into the layers named ``targets`` (name suffixes,
    e.g. ``to_q``); returns the number of trained parameters. A's initialisation uses ``seed``."""
    from peft import LoraConfig

    unet.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=list(targets))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            unet.add_adapter(config, adapter_name=ADAPTER)
    except ValueError:  # peft: "Target modules {...} not found in the base model"
        raise StudioError(f"--lora-targets {','.join(targets)} match no layer of the UNet; name layers such as "
                          "to_q,to_k,to_v,to_out.0") from None
    return sum(p.numel() for p in unet.parameters() if p.requires_grad)


def has_lora(unet) -> bool:
    return bool(getattr(unet, "peft_config", None))


def save_adapter(unet, out) -> Path:
    """The adapter alone, in diffusers' LoRA format (``pytorch_lora_weights.safetensors`` with its
    rank and alpha as metadata), so ``pipe.load_lora_weights(out)`` applies it to the base pipeline."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet, adapter_name=ADAPTER))
    with atomic_path(out) as tmp:
        StableDiffusionPipeline.save_lora_weights(
            str(tmp), unet_lora_layers={k: v.detach().cpu().contiguous() for k, v in state.items()},
            unet_lora_adapter_metadata=unet.peft_config[ADAPTER].to_dict(), safe_serialization=True)
    return Path(out)


def merge_lora(unet):
    """Fold the adapter into the base weights and remove the peft layers: a plain UNet again."""
    unet.fuse_lora(lora_scale=1.0)
    unet.unload_lora()
    return unet
