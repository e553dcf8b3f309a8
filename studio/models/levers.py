"""Memory levers of a Stable Diffusion UNet training, the switches every SD trainer offers.

Used by every SD-UNet method (the teacher's UNet stage, ``reflow train``, ``reflow distill``):

- gradient checkpointing of the trained UNet (diffusers' own switch; activations are recomputed
  in the backward pass) and, for a loss through the VAE decoder (``--loss lpips``), of the decoder;
- LoRA through peft (``studio.models.lora``): only the adapter is optimised, EMA'd and
  checkpointed; the export is a plain pipeline with the adapter merged, and on request also the
  adapter alone in diffusers' LoRA format;
- frozen modules (text encoder, VAE) held in bf16/fp16 on the training device while the trained
  weights stay fp32; the export keeps the frozen modules' own fp32 weights.

The optimizer (``--optimizer adamw8bit``) and the EMA's place (``--ema-device cpu``, or
``--ema-decay 0`` for none) are options of the shared loop (``studio.training.config``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch

from studio.cli.schema import option
from studio.models.backbone import Dtype, parse_dtype, save_pipeline
from studio.models import lora

LORA_TARGETS = "to_q,to_k,to_v,to_out.0"  # the attention projections, as diffusers' LoRA scripts


@dataclass
class MemoryLevers:
    """Memory levers: gradient checkpointing, LoRA, frozen-module precision."""

    gradient_checkpointing: bool = option(False, "recompute the trained UNet's activations in the backward pass "
                                                 "(and the VAE decoder's under --loss lpips): less memory, more time")
    lora_rank: int = option(0, "train a LoRA adapter of this rank on the UNet instead of all its weights (0: full "
                               "fine-tuning)", ge=0)
    lora_alpha: float = option(0.0, "LoRA scale: the update is (alpha / rank) B A (0: alpha = rank)", ge=0)
    lora_targets: str = option(LORA_TARGETS, "comma-separated names of the UNet layers LoRA adapts")
    lora_export: Literal["merged", "both"] = option(
        "merged", "merged: a plain pipeline with the adapter folded in; both: also the adapter alone in "
                  "diffusers' LoRA format, in OUT/lora")
    frozen_dtype: Dtype = option("float32", "precision of the frozen modules (text encoder, VAE) on the training "
                                            "device; trained weights stay float32")


def lora_targets(levers: MemoryLevers) -> tuple[str, ...]:
    return tuple(t.strip() for t in levers.lora_targets.split(",") if t.strip())


def apply_to_unet(unet, levers: MemoryLevers, seed: int) -> None:
    """LoRA (seeded) and gradient checkpointing on the UNet to be trained."""
    if levers.lora_rank:
        lora.add_lora(unet, levers.lora_rank, levers.lora_alpha, lora_targets(levers), seed)
    if levers.gradient_checkpointing:
        unet.enable_gradient_checkpointing()


def frozen_copy(module: torch.nn.Module, device, levers: MemoryLevers) -> torch.nn.Module:
    """A frozen module on ``device`` in the levers' precision. In float32 it is the module itself;
    otherwise a cast copy, so the original keeps its fp32 weights for the export."""
    module.requires_grad_(False).eval()
    dtype = parse_dtype(levers.frozen_dtype)
    if dtype == torch.float32:
        return module.to(device)
    return copy.deepcopy(module).to(device=device, dtype=dtype)


def export_pipeline(pipe, unet, out, levers: MemoryLevers):
    """Save ``pipe`` with its trained ``unet`` as a plain pipeline; under LoRA the adapter is written alone
    first (``--lora-export both``), then merged into the UNet."""
    if lora.has_lora(unet):
        if levers.lora_export == "both":
            lora.save_adapter(unet, out / lora.LORA_DIR)
        unet = lora.merge_lora(unet)
    pipe.unet = unet
    return save_pipeline(pipe.to("cpu"), out)
