"""``studio sample``: a grid of images from a pipeline directory (or hub id)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from studio import StudioError
from studio.models.backbone import load_pipeline
from studio.data.prompts import read_prompt_file
from studio.images import make_grid, save_png
from studio.models.model_info import sampling_settings
from studio.diffusion.sampling import generate


@dataclass
class SampleConfig:
    pipeline: str = field(default="", metadata={"positional": True, "help": "pipeline directory or hub id"})
    prompt: str = field(default="", metadata={"help": "one prompt (or use --prompts)"})
    prompts: str = field(default="", metadata={"help": "a prompt file, one prompt per line; one grid row each"})
    num: int = field(default=16, metadata={"help": "images per prompt"})
    steps: int = field(default=0, metadata={"help": "0: the model's recommended (teacher 25, 2-RF 25, student 1)"})
    guidance: float = field(default=-1.0, metadata={"help": "negative: the model's recommended (teacher 5, 2-RF 1.5, "
                                                            "student 1 = none)"})
    seed: int = 0
    solver: str = field(default="auto", metadata={"help": "auto (the pipeline's own), dpmsolver, ddim, euler, ..."})
    batch_size: int = 16
    dtype: str = "float32"
    device: str = "cpu"
    out: str = "grid.png"


def run_sample(cfg: SampleConfig) -> Path:
    if not cfg.pipeline:
        raise StudioError("give the pipeline directory: studio sample PIPELINE_DIR --prompt '...'")
    if bool(cfg.prompt) == bool(cfg.prompts):
        raise StudioError("give exactly one of --prompt TEXT or --prompts FILE")
    if cfg.num < 1:
        raise StudioError(f"--num must be at least 1, got {cfg.num}")
    prompts = [cfg.prompt] if cfg.prompt else read_prompt_file(cfg.prompts)
    pipe = load_pipeline(cfg.pipeline, dtype=cfg.dtype, device=cfg.device)
    cfg = replace(cfg, **dict(zip(("steps", "guidance"), sampling_settings(cfg.pipeline, cfg.steps, cfg.guidance))))
    batch = [p for p in prompts for _ in range(cfg.num)]
    images = generate(pipe, batch, steps=cfg.steps, guidance=cfg.guidance, seed=cfg.seed, solver=cfg.solver,
                      batch_size=cfg.batch_size, progress=True)
    meta = {"parameters": json.dumps(asdict(cfg)), "prompts": json.dumps(prompts)}
    return save_png(make_grid(images, nrow=cfg.num if len(prompts) > 1 else None), cfg.out, meta)
