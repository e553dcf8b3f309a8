"""``studio demo``: the whole loop on a laptop CPU.

Trains the built-in ``tiny`` teacher on Fashion-MNIST with a small budget, then writes one
sample grid PNG per class prompt (and one grid of all classes). Reruns reuse the trained
teacher and resume an interrupted run (``--resume latest`` is the default here).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from studio.cli.schema import option
from studio.models.backbone import load_pipeline
from studio.data import FASHION_MNIST_CLASSES, class_prompts
from studio.images import make_grid, save_png
from studio.diffusion.sampling import generate
from studio.teacher import TeacherConfig, train_teacher


def _demo_teacher() -> TeacherConfig:
    """The teacher's recipe on a demo budget (about 11 minutes on 2 cores: 500 VAE and 2,000 UNet steps, where
    the defaults take about 1.5 hours) and its guidance 5 (benchmarks/teacher_budget.py), resuming by default."""
    base = TeacherConfig()
    return replace(base, out="runs/demo/teacher", vae_steps=500, sample_guidance=5.0,
                   train=replace(base.train, steps=2000, resume="latest"))


@dataclass
class DemoConfig:
    """Settings of studio demo."""

    teacher: TeacherConfig = option(factory=_demo_teacher, flatten=True)
    samples_out: str = option("runs/demo/samples", "where the grids go")
    num_per_class: int = option(16, ge=1)
    sample_seed: int = 0


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def run_demo(cfg: DemoConfig) -> Path | None:
    pipe_dir = train_teacher(cfg.teacher)
    if pipe_dir is None:
        print("interrupted; rerun the same command to continue")
        return None
    pipe = load_pipeline(pipe_dir)
    prompts = class_prompts(FASHION_MNIST_CLASSES)
    out = Path(cfg.samples_out)
    rows = []
    steps, guidance = cfg.teacher.sample_steps, cfg.teacher.sample_guidance  # the teacher's recommended
    for prompt in prompts:
        images = generate(pipe, [prompt] * cfg.num_per_class, steps=steps, guidance=guidance, seed=cfg.sample_seed)
        meta = {"prompt": prompt, "steps": steps, "guidance": guidance, "seed": cfg.sample_seed}
        path = save_png(make_grid(images), out / f"{_slug(prompt)}.png", meta)
        print(f"wrote {path}")
        rows.append(images[:8])
    import numpy as np

    overview = save_png(make_grid(np.concatenate(rows), nrow=8), out / "all_classes.png",
                        {"parameters": json.dumps(asdict(cfg), default=str)})
    print(f"wrote {overview} (one row per class: {', '.join(FASHION_MNIST_CLASSES)})")
    return overview
