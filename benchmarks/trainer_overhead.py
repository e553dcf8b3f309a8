"""Trainer overhead: time per step of the studio loop against a bare PyTorch loop.

Same model (the tiny teacher's UNet stage: UNet + text encoder, frozen VAE), same batch
size, same loss function, same optimizer and clipping, measured alternately in one run;
reported as the median over repeats of (studio s/step) / (bare s/step). Goal: <= 1.05.

    python benchmarks/trainer_overhead.py [--steps 40 --repeats 5 --batch-size 32]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import numpy as np
import torch

from _common import write_result
from studio.data import FASHION_MNIST_CLASSES, load_dataset
from studio.models.presets import build_pipeline, tokenizer_corpus
from studio.training.randomness import StepRandom
from studio.teacher.objective import UNetStage
from studio.training.config import TrainerConfig
from studio.training.loop import train


WARMUP = 3  # steps excluded from timing in both loops


class TimedUNetStage(UNetStage):
    """Records when step WARMUP starts and when the last step ends (excludes setup and saving)."""

    def on_step_start(self, step):
        if step == WARMUP:
            self.t0 = time.perf_counter()

    def on_step_end(self, step, logs):
        self.t1 = time.perf_counter()


def bare_loop(method: UNetStage, cfg: TrainerConfig) -> float:
    """forward, backward, clip, AdamW step: the least a hand-written loop does."""
    modules = method.trainable()
    method.setup(torch.device("cpu"))
    params = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    data, rng = method.dataset(), np.random.default_rng(0)
    for step in range(cfg.steps):
        if step == WARMUP:
            t0 = time.perf_counter()
        batch = data.batch(rng.integers(0, len(data), cfg.batch_size))
        loss, _ = method.loss(modules, batch, StepRandom(0, step, 0, 0, 1, cfg.batch_size))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / (cfg.steps - WARMUP)


def studio_loop(method: TimedUNetStage, cfg: TrainerConfig) -> float:
    with tempfile.TemporaryDirectory() as out:
        train(method, cfg, out)
    return (method.t1 - method.t0) / (cfg.steps - WARMUP)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    data = load_dataset("fashion-mnist", limit=4096)
    base = build_pipeline("tiny", tokenizer_corpus(FASHION_MNIST_CLASSES, sorted(set(data.captions))))
    cfg = TrainerConfig(steps=args.steps, batch_size=args.batch_size, lr=1e-4, ema_decay=0.0,
                        checkpoint_every=10**9, log_every=10, tracker="tensorboard", progress=False)
    # Timed from step WARMUP to the last step in both loops: the studio side includes
    # accelerate, the data order, RNG streams, finite checks and TensorBoard logging every
    # 10 steps; setup and the final checkpoint are outside the window. EMA is off in both.
    bare, ours = [], []
    for _ in range(args.repeats):
        bare.append(bare_loop(UNetStage(copy.deepcopy(base), data), cfg))
        ours.append(studio_loop(TimedUNetStage(copy.deepcopy(base), data), cfg))
    ratios = [o / b for o, b in zip(ours, bare)]
    write_result("trainer_overhead", {
        "what": "s/step of studio.training.loop.train vs a bare PyTorch loop, tiny teacher UNet stage, CPU",
        "command": "python benchmarks/trainer_overhead.py",
        "steps_per_run": args.steps, "repeats": args.repeats, "batch_size": args.batch_size,
        "bare_s_per_step": bare, "studio_s_per_step": ours, "ratios": ratios,
        "median_ratio": statistics.median(ratios), "goal": "<= 1.05",
    })
    print(f"median studio/bare ratio {statistics.median(ratios):.3f} over {args.repeats} repeats")


if __name__ == "__main__":
    main()
