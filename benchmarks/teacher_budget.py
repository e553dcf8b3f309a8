"""The teacher's default CPU budget: training wall time and a sample grid per class.

Trains exactly what ``studio demo`` trains (DemoConfig defaults), then samples 8 images per
class prompt (25 DPM-Solver++ steps, guidance 5). An interrupted run resumes; wall time is
summed over invocations (kept in OUT/bench_timing.json) and the JSON says how many there were.

    python benchmarks/teacher_budget.py [--out runs/bench/teacher-demo] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from _common import RESULTS, write_result
from studio.models.backbone import load_pipeline
from studio.data import FASHION_MNIST_CLASSES, class_prompts
from studio.cli.demo import DemoConfig
from studio.images import make_grid, save_png
from studio.diffusion.sampling import generate
from studio.teacher import train_teacher


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench/teacher-demo")  # not instaflow.py's teacher
    ap.add_argument("--fresh", action="store_true", help="delete OUT first")
    args = ap.parse_args()
    out = Path(args.out)
    if args.fresh:
        shutil.rmtree(out, ignore_errors=True)
    demo = DemoConfig()
    cfg = replace(demo.teacher, out=str(out), train=replace(demo.teacher.train, progress=True))
    timing_file = out / "bench_timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else {"train_s": 0.0, "invocations": 0}
    t0 = time.perf_counter()
    pipe_dir = train_teacher(cfg)
    timing["train_s"] += time.perf_counter() - t0
    timing["invocations"] += 1
    out.mkdir(parents=True, exist_ok=True)
    timing_file.write_text(json.dumps(timing))
    if pipe_dir is None:
        print("interrupted; rerun to resume")
        return
    pipe = load_pipeline(pipe_dir)
    prompts = [p for p in class_prompts(FASHION_MNIST_CLASSES) for _ in range(8)]
    t0 = time.perf_counter()
    images = generate(pipe, prompts, steps=cfg.sample_steps, guidance=cfg.sample_guidance, seed=0, batch_size=16)
    sample_s = time.perf_counter() - t0
    grid = save_png(make_grid(images, nrow=8), RESULTS / "teacher_grid.png",
                    {"rows": json.dumps(FASHION_MNIST_CLASSES)})
    write_result("teacher_budget", {
        "what": "built-in tiny teacher trained on the default CPU budget (studio demo)",
        "command": "python benchmarks/teacher_budget.py --fresh",
        "train_wall_s": round(timing["train_s"], 1), "invocations": timing["invocations"],
        "vae_steps": cfg.vae_steps, "vae_batch_size": cfg.vae_batch_size,
        "unet_steps": cfg.train.steps, "unet_batch_size": cfg.train.batch_size,
        "sampling": {"images": len(images), "steps": cfg.sample_steps, "guidance": cfg.sample_guidance,
                     "s_per_image": round(sample_s / len(images), 4)},
        "grid": str(grid.relative_to(RESULTS.parent.parent)), "grid_rows": FASHION_MNIST_CLASSES,
        "config": asdict(cfg),
        "pixel_mean": float(np.mean(images)),
    })


if __name__ == "__main__":
    main()
