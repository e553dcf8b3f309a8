"""A memory model of one ``reflow train`` / ``reflow distill`` step of SD 1.5 on a GPU, per lever set.

    peak = weights + gradients + optimizer state + EMA + batch x activations(per sample) + overhead

- weights: the UNet in float32 (4 bytes per parameter; under LoRA its frozen base as well) and the
  frozen text encoder (CLIP ViT-L/14's 123.1M parameters) in float32 or, with ``--frozen-dtype``
  bf16/fp16, 2 bytes. The VAE stays on the CPU (it is moved to the GPU only for ``--loss lpips``).
- gradients: 4 bytes per trained parameter; AdamW state: 8 (two float32 moments) plus 4 for the
  step's temporaries (torch's foreach AdamW on CUDA computes sqrt(v) into new tensors), 8-bit
  AdamW: 2; EMA: 4 on the device (0 with ``--ema-device cpu`` or ``--ema-decay 0``).
- activations per sample: measured in ``benchmarks/sd_scale.py`` at its resolution on the CPU at
  batch 1, as the peak resident memory of a training step (after the first, which allocates the
  optimizer state) above the memory at the step's start, minus the gradients, on the LoRA rows
  without and with checkpointing (their gradients and optimizer state are negligible); then scaled
  to 512x512 by the token count ((512 / resolution)^2: memory-efficient attention, as PyTorch's
  SDPA on CUDA, is linear in tokens) and halved for bf16 autocast (the default
  ``--mixed-precision auto`` on a bf16 GPU stores most activations in 16 bits).
- overhead: 1.5 GB for the CUDA context, cuDNN workspaces and allocator slack. A card of C GiB is
  taken to offer 95 % of C x 2^30 bytes.
Assumptions, not measurements: the GPU check (``benchmarks/gpu_check.sh``) measures
``torch.cuda.max_memory_allocated`` per lever where a GPU is available.
"""

from __future__ import annotations

UNET, TEXT = 859_520_964, 123_060_480  # SD 1.5's released parameter counts
OVERHEAD_GB, BF16_ACTIVATIONS, CARDS, BATCHES = 1.5, 0.5, (24, 48, 80), (1, 4, 8)
GB = 1e9


def _state_bytes(levers: dict, trained: int, ema_on_device: bool) -> tuple[float, float]:
    """(gradients + optimizer state, EMA) bytes for ``trained`` parameters."""
    optimizer = 2 if levers.get("optimizer") == "adamw8bit" else 8 + 4
    return trained * (4 + optimizer), trained * 4 * ema_on_device


def activation_per_sample(row: dict) -> float:
    """Bytes of activations of one sample at the measured resolution: the peak of a training step above
    the memory at its start (weights, optimizer state and EMA already allocated) minus the gradients."""
    return max(0.0, row["step_peak_above_start_gb"] * GB - 4 * row["trained_parameters"])


def project(rows: dict, resolution: int, activation_rows: dict, target: int = 512) -> dict:
    """Projected peak GPU GB per lever set at ``target`` pixels for each batch size, and the lever sets
    each card size fits at batch 1 and 4. ``activation_rows`` names, for gradient checkpointing off
    (False) and on (True), the row whose activations every row with that setting uses: a LoRA row,
    where gradients and optimizer state are too small to blur the measurement (in a full fine-tuning
    step the gradients fill in while the activations are freed, so their peaks overlap)."""
    scale = (target / resolution) ** 2 * BF16_ACTIVATIONS
    measured = {ckpt: activation_per_sample(rows[name]) for ckpt, name in activation_rows.items()}
    out = {}
    for name, row in rows.items():
        lv, trained = row["levers"], row["trained_parameters"]
        grads_opt, ema = _state_bytes(lv, trained, row["ema_on_device"])
        text = TEXT * (4 if lv.get("frozen_dtype", "float32") == "float32" else 2)
        static = UNET * 4 + text + grads_opt + ema + OVERHEAD_GB * GB
        act = measured[bool(lv.get("gradient_checkpointing"))] * scale
        out[name] = {"static_gb": round(static / GB, 2), "activations_gb_per_sample": round(act / GB, 2),
                     **{f"batch_{b}_gb": round((static + b * act) / GB, 1) for b in BATCHES}}
    usable = {card: 0.95 * card * 2 ** 30 / GB for card in CARDS}
    fits = {f"{card}GB": {f"batch_{b}": [n for n, p in out.items() if p[f"batch_{b}_gb"] <= usable[card]]
                          for b in (1, 4)} for card in CARDS}
    return {"target_resolution": target, "measured_resolution": resolution, "rows": out, "fits": fits,
            "activations_measured_gb_per_sample": {("checkpointing" if k else "no checkpointing"):
                                                   round(v / GB, 3) for k, v in measured.items()},
            "activation_rows": {("checkpointing" if k else "no checkpointing"): v for k, v in activation_rows.items()},
            "assumptions": "activations x (target/measured)^2 x 0.5 (bf16 autocast); AdamW temporaries 4 bytes "
                           "per trained weight; +1.5 GB overhead; the text encoder is CLIP ViT-L/14 (123.1M); the "
                           "VAE stays on the CPU; a card of C GiB offers 0.95 C GiB"}
