"""The GPU check of SD-size distillation: one command, under 8 minutes on one modern GPU.

    bash benchmarks/gpu_check.sh                      # CUDA: sd15 preset at 512x512, bf16
    python benchmarks/gpu_check.py --dry-run --out X  # CPU: tiny preset, the same code paths (tested)

On the ``sd15`` preset (SD 1.5's architecture, random weights; timing and memory do not depend on
the weights) it measures: ms per image of the one-step student path and of 25-step CFG sampling
(InstaFlow: 0.09 s per one-step image on an A100), ``torch.cuda.max_memory_allocated`` of one
``reflow train`` step at batch 1 per lever set, a few bf16 mixed-precision training steps (the loop
stops on a non-finite loss, so finishing them means every loss was finite), and the pairs
throughput of the ``reflow pairs`` sampler. It writes one JSON (default
``benchmarks/results/gpu_check.json``).
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._common import RESULTS, machine, write_result  # noqa: E402
from benchmarks.sd_scale import PROMPTS, ROWS, row_config  # noqa: E402


class _Stop(Exception):
    pass


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int) -> float:
    fn()  # warm-up (kernels, allocator)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_row(work: Path, spec: dict, steps: int, device, mixed: str) -> dict:
    """``steps`` reflow-train steps at batch 1; peak allocated memory and the losses; no final checkpoint."""
    from distill.reflow.commands import reflow_method
    from studio.training.loop import train

    cfg = row_config(work, spec, steps, mixed_precision=mixed)
    tcfg = cfg.train
    method = reflow_method(cfg)
    losses, loss = [], method.loss

    def logged(*a):
        result = loss(*a)
        losses.append(float(result[0].detach()))
        return result

    def end(step, logs):
        if step == steps - 1:
            raise _Stop

    method.loss, method.on_step_end = logged, end
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        train(method, tcfg, work / "train" / str(time.time_ns()))
    except _Stop:
        pass
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None
    del method
    gc.collect()
    return {"max_memory_allocated_gb": None if peak is None else round(peak, 2), "losses": losses}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny preset: check the script itself")
    ap.add_argument("--work", default="/tmp/gpu_check")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    from studio.cli.build import BuildConfig, run_build
    from studio.diffusion.sampling import generate, sample_latents
    from studio.diffusion.flow import flow_scheduler
    from studio.models.backbone import load_pipeline
    from distill.reflow.config import PairsConfig
    from distill.reflow.pairs import generate_pairs

    dry = args.dry_run
    device = torch.device("cpu" if dry else "cuda")
    preset, res, dtype = ("tiny", 32, "float32") if dry else ("sd15", 512, "bfloat16")
    work = Path(args.work)
    t0 = time.perf_counter()
    run_build(BuildConfig(preset=preset, resolution=res, out=str(work / "base"), overwrite=True))
    pipe = load_pipeline(work / "base", dtype=dtype, device=device)
    repeats = 2 if dry else 5
    cfg_ms = timed(lambda: generate(pipe, PROMPTS[:1], steps=25, guidance=5.0, seed=0), device, repeats) * 1e3
    pairs_s = timed(lambda: sample_latents(pipe, PROMPTS * 4, 25, 5.0, list(range(8)), "dpmsolver"), device, 2)
    pipe.scheduler = flow_scheduler()  # the one-step student's path
    one_ms = timed(lambda: generate(pipe, PROMPTS[:1], steps=1, guidance=1.0, seed=0), device, repeats) * 1e3
    pipe = None  # free its memory before the training rows
    prompts = work / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    generate_pairs(PairsConfig(teacher=str(work / "base"), prompts=str(prompts), num=2, steps=2, batch_size=2,
                               out=str(work / "pairs"), device=str(device)))
    mixed = "no" if dry else "bf16"
    rows = {name: train_row(work, spec, 1, device, mixed) for name, spec in ROWS.items()}
    bf16 = train_row(work, ROWS["LoRA rank 64 + checkpointing"], 4, device, mixed)
    write_result("gpu_check", {
        "machine": machine(), "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (dry run)",
        "preset": preset, "resolution": res, "dtype": dtype,
        "one_step_ms_per_image": round(one_ms, 1), "cfg_25_step_ms_per_image": round(cfg_ms, 1),
        "pairs_per_second_25_steps_cfg_batch_8": round(8 / pairs_s, 2),
        "train_step_memory_batch_1": rows, "mixed_precision_steps": {"mixed_precision": mixed, **bf16,
                                                                     "all_finite": all(map(math.isfinite, bf16["losses"]))},
        "seconds": round(time.perf_counter() - t0, 1),
    }, Path(args.out))


if __name__ == "__main__":
    main()
