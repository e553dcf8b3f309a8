"""``studio model build``: a preset's pipeline with random weights, assembled offline.

``--preset sd15`` gives Stable Diffusion 1.5's architecture (``studio.models.presets``) at a chosen
resolution: a way to size a run, or to check a cluster end to end, before downloading weights.
The directory is an ordinary diffusers ``StableDiffusionPipeline`` that every studio command takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from studio import StudioError
from studio.cli.schema import option, validate
from studio.data import FASHION_MNIST_CLASSES
from studio.data.prompts import read_prompt_file
from studio.models.backbone import is_pipeline_dir, save_pipeline
from studio.models.model_info import write_model_info
from studio.models.presets import PresetName, build_pipeline, tokenizer_corpus


@dataclass
class BuildConfig:
    """Settings of studio model build."""

    preset: PresetName = option("sd15", f"architecture: {', '.join(get_args(PresetName))}")
    resolution: int = option(0, "image size in pixels (0: the preset's own; sd15: 512)", ge=0)
    prompts: str = option("", "a prompt file whose words the tokenizer also learns (default: Fashion-MNIST's "
                              "class captions)")
    seed: int = option(0, "seed of the random weights")
    out: str = "runs/sd15-random"
    overwrite: bool = option(False, "replace a pipeline already in --out")


def run_build(cfg: BuildConfig) -> Path:
    validate(cfg)
    out = Path(cfg.out)
    if is_pipeline_dir(out) and not cfg.overwrite:
        raise StudioError(f"{out} already holds a pipeline; pass --overwrite to replace it or choose another --out")
    extra = read_prompt_file(cfg.prompts) if cfg.prompts else []
    pipe = build_pipeline(cfg.preset, tokenizer_corpus(FASHION_MNIST_CLASSES, extra), cfg.seed, cfg.resolution)
    save_pipeline(pipe, out)
    write_model_info(out, kind="teacher", steps=25, guidance=5.0, preset=cfg.preset, weights="random",
                     resolution=pipe.unet.config.sample_size * pipe.vae_scale_factor)
    n = {k: sum(p.numel() for p in getattr(pipe, k).parameters()) / 1e6 for k in ("unet", "vae", "text_encoder")}
    print(f"{cfg.preset} pipeline with random weights in {out}: " + ", ".join(f"{k} {v:.1f}M" for k, v in n.items()))
    return out
