"""The network of the consistency and EDM models: a diffusers ``UNet2DModel`` in the consistency
parameterisation (``studio.diffusion.adapter.ConsistencyDenoiser``; CM, Song et al. 2023, sec. 3;
iCT sec. 2) or in EDM's (the same with sigma_min = 0; Karras et al. 2022, eq. 7), and the folder
both are saved in.

Model folder: ``unet/`` (the UNet2DModel, safetensors) and ``studio_model.json``, which records the
parameterisation (``sigma_data``, ``noise_scale``) with the kind and class names. Where plain
diffusers can express the parameterisation the folder is also a diffusers artefact (``scheduler/``,
and for a consistency model ``model_index.json``: a ``ConsistencyModelPipeline``); see
``consistency.sampling`` and ``consistency.edm``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import UNet2DModel

from studio import StudioError
from studio.diffusion.adapter import ConsistencyDenoiser
from studio.models.model_info import read_model_info

from consistency.recipe import SIGMA_DATA, SIGMA_MIN

# Built-in size for 32x32 images (1.1M parameters); the diffusion baselines of the benchmarks use the same.
SMALL_UNET = dict(sample_size=32, in_channels=3, out_channels=3, layers_per_block=1,
                  block_out_channels=(32, 64, 64), down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                  up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=16,
                  attention_head_dim=32)

# c_noise = scale ln(sigma): 250 is diffusers' CMStochasticIterativeScheduler (and the CM ImageNet/LSUN
# code), 0.25 is EDM's (Table 1) and the CM CIFAR-10 code's
NOISE_SCALES = (250.0, 0.25)


@dataclass(frozen=True)
class Precond:
    """The parameterisation a model was trained in, recorded in its ``studio_model.json``."""

    sigma_data: float = SIGMA_DATA
    noise_scale: float = 250.0

    @classmethod
    def of(cls, info: dict) -> "Precond":
        return cls(float(info.get("sigma_data", SIGMA_DATA)), float(info.get("noise_scale", 250.0)))


def build_unet(num_classes: int = 0, dropout: float = 0.0, seed: int = 0, **overrides) -> UNet2DModel:
    torch.manual_seed(seed)
    cfg = {**SMALL_UNET, **overrides, "dropout": dropout}
    if num_classes:
        cfg["num_class_embeds"] = num_classes
    return UNet2DModel(**cfg)


def consistency_model(unet, precond: Precond = Precond(), sigma_min: float = SIGMA_MIN) -> ConsistencyDenoiser:
    """f_theta(x, sigma) with the boundary at sigma_min (iCT: 0.002); f(x, sigma_min) = x exactly."""
    return ConsistencyDenoiser(unet, precond.sigma_data, sigma_min, precond.noise_scale)


def edm_denoiser(unet, precond: Precond) -> ConsistencyDenoiser:
    """EDM's D_theta(x; sigma) (eq. 7): the consistency form with sigma_min = 0."""
    return ConsistencyDenoiser(unet, precond.sigma_data, 0.0, precond.noise_scale)


def load_model(folder, kinds: tuple[str, ...]) -> tuple[UNet2DModel, dict]:
    """(UNet in eval mode, its studio_model.json) of a model folder of one of ``kinds``; one-line errors."""
    folder = Path(folder)
    if not (folder / "unet" / "config.json").is_file() or not (folder / "studio_model.json").is_file():
        raise StudioError(f"{folder} is not a studio model folder (it needs unet/ and studio_model.json)")
    info = read_model_info(folder)
    if info.get("kind") not in kinds:
        raise StudioError(f"{folder} holds a {info.get('kind')!r} model; this needs one of: {', '.join(kinds)}")
    try:
        unet = UNet2DModel.from_pretrained(str(folder / "unet"), use_safetensors=True)
    except (OSError, ValueError) as e:
        raise StudioError(f"cannot load the UNet of {folder}: {str(e).strip().splitlines()[0]}") from None
    return unet.eval(), info
