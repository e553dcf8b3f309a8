"""``studio sample``: a grid of images from a pipeline directory (or hub id)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from studio import StudioError
from studio.cli.schema import option, validate
from studio.devices import resolve_device
from studio.files import check_writable
from studio.models.backbone import Dtype, load_pipeline
from studio.data.prompts import read_prompt_file
from studio.images import make_grid, save_png
from studio.models.model_info import sampling_settings
from studio.diffusion.sampling import Solver, generate


@dataclass
class SampleConfig:
    """Settings of studio sample."""

    pipeline: str = option(help="pipeline directory or hub id", positional=True)
    prompt: str = option("", "one prompt (or use --prompts)")
    prompts: str = option("", "a prompt file, one prompt per line; one grid row each")
    num: int = option(16, "images per prompt", ge=1)
    steps: int | None = option(None, "sampling steps; None: the model's recommended (studio_model.json; teacher "
                                     "25, 2-RF 25, student 1)", ge=1)
    guidance: float | None = option(None, "classifier-free guidance (<= 1: none); None: the model's recommended "
                                          "(teacher 5, 2-RF 1, student 1)", ge=0)
    seed: int = 0
    solver: Solver = option("auto", "auto: the pipeline's own scheduler")
    batch_size: int = option(16, ge=1)
    dtype: Dtype = "float32"
    device: str = "cpu"
    out: str = "grid.png"


def run_sample(cfg: SampleConfig) -> Path:
    validate(cfg)
    if bool(cfg.prompt) == bool(cfg.prompts):
        raise StudioError("give exactly one of --prompt TEXT or --prompts FILE")
    check_writable(cfg.out)
    prompts = [cfg.prompt] if cfg.prompt else read_prompt_file(cfg.prompts)
    pipe = load_pipeline(cfg.pipeline, dtype=cfg.dtype, device=resolve_device(cfg.device))
    cfg = replace(cfg, **dict(zip(("steps", "guidance"), sampling_settings(cfg.pipeline, cfg.steps, cfg.guidance))))
    batch = [p for p in prompts for _ in range(cfg.num)]
    images = generate(pipe, batch, steps=cfg.steps, guidance=cfg.guidance, seed=cfg.seed, solver=cfg.solver,
                      batch_size=cfg.batch_size, progress=True)
    meta = {"parameters": json.dumps(asdict(cfg)), "prompts": json.dumps(prompts)}
    return save_png(make_grid(images, nrow=cfg.num if len(prompts) > 1 else None), cfg.out, meta)
