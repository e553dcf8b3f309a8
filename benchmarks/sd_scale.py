"""Stable Diffusion at real size on the CPU: the memory levers, pairs and one-step speed, the whole chain.

    python benchmarks/sd_scale.py            # about 25 minutes on 2 cores, peak about 20 GB

On the ``sd15`` preset (SD 1.5's architecture, random weights) at 256x256 (32x32 latents):
- peak resident memory and seconds per ``reflow train`` step at batch 1 for each lever set, and as a
  ratio against today's full default (each row in its own process, so peaks do not mix);
- pairs per second of ``reflow pairs``' sampler against plain ``StableDiffusionPipeline(...,
  output_type="latent")`` on the same prompts, seeds, solver, steps and guidance (same process);
- the one-step student's image time against bare text-encoder + UNet + VAE-decode calls;
- the whole chain through the CLI (pairs, 2-RF, pairs of the 2-RF, student, export) and the plain
  diffusers one-step image against ``studio sample``'s;
- the memory model (``benchmarks/sd_memory.py``) projected to 512x512 on a GPU, and the bytes the
  UNet's forward saves for the backward pass at this size and at 512x512 (its scaling check).
Each part's result is kept in WORK/partial.json, so a killed run continues where it stopped. A train
row stops its process right after its last step (``os._exit``), before the loop's final checkpoint,
which for full fine-tuning would write 10 GB that nothing reads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, machine, write_result  # noqa: E402
from benchmarks.sd_memory import project  # noqa: E402

PROMPTS = ["a photo of a coat", "a photo of a sneaker"]
ROWS = {  # lever sets of `reflow train`, as MemoryLevers / TrainerConfig fields
    "full default": {},
    "+ gradient checkpointing": {"gradient_checkpointing": True},
    "+ 8-bit AdamW": {"optimizer": "adamw8bit"},
    "LoRA rank 64": {"lora_rank": 64},
    "LoRA rank 64 + checkpointing": {"lora_rank": 64, "gradient_checkpointing": True},
    "LoRA 64 + checkpointing + bf16 frozen + CPU EMA": {"lora_rank": 64, "gradient_checkpointing": True,
                                                         "frozen_dtype": "bfloat16", "ema_device": "cpu"},
}
TRAIN_FIELDS = ("optimizer", "ema_device", "ema_decay")


def rss(field: str = "VmHWM") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def studio(*args) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "studio", *map(str, args)], check=True)
    return round(time.perf_counter() - t0, 1)


# -- parts run in a child process ------------------------------------------------------------------------

def row_config(work: Path, spec: dict, steps: int, **train):
    """The ``reflow train`` config of a lever set ``spec`` (a ROWS value) at batch 1 on WORK's base and pairs;
    ``train``: more TrainerConfig fields (e.g. mixed_precision)."""
    from distill.reflow.config import ReflowTrainConfig, _reflow_train_defaults
    from studio.models.levers import MemoryLevers

    levers = MemoryLevers(**{k: v for k, v in spec.items() if k not in TRAIN_FIELDS})
    tcfg = replace(_reflow_train_defaults(), steps=steps, batch_size=1, tracker="none", progress=False,
                   checkpoint_every=10 ** 6, **{k: v for k, v in spec.items() if k in TRAIN_FIELDS}, **train)
    return ReflowTrainConfig(init=str(work / "base"), pairs=str(work / "pairs"), out=str(work / "train"),
                             memory=levers, train=tcfg)


def part_train(work: Path, row: str, steps: int) -> dict:
    from distill.reflow.commands import reflow_method
    from studio.training.loop import train

    cfg = row_config(work, ROWS[row], steps)
    tcfg = cfg.train
    method = reflow_method(cfg)
    trained = sum(p.numel() for m in method.trainable().values() for p in m.parameters() if p.requires_grad)
    marks = {}

    def start(step):
        if step == 1:  # step 0 allocated the optimizer state and paged the weights in: measure from here on
            marks["life"] = rss()
            Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak (VmHWM) to the current RSS
            marks["before"] = rss("VmRSS")
        marks[step] = time.perf_counter()

    def end(step, logs):
        marks[step] = time.perf_counter() - marks[step]
        if step == steps - 1:
            times = [marks[s] for s in range(1, steps)]  # step 0 also allocates the optimizer state
            print("RESULT " + json.dumps({"seconds_per_step": round(statistics.median(times), 2),
                                          "step_seconds": [round(t, 2) for t in times],
                                          "peak_rss_gb": round(max(marks["life"], rss()) / 1e9, 2),
                                          "rss_at_step_1_gb": round(marks["before"] / 1e9, 2),
                                          "step_peak_above_start_gb": round((rss() - marks["before"]) / 1e9, 2),
                                          "trained_parameters": trained, "ema_on_device": tcfg.ema_device != "cpu"}),
                  flush=True)
            os._exit(0)

    method.on_step_start, method.on_step_end = start, end
    train(method, tcfg, work / "train" / row.replace(" ", "_"))
    raise RuntimeError("unreachable: the last step exits")


def _median_pair(a, b, repeats):
    ta, tb = [], []
    for _ in range(repeats):  # alternate, so both see the same machine load
        t0 = time.perf_counter()
        out_a = a()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out_b = b()
        tb.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb), out_a, out_b


def part_pairs(work: Path, repeats: int) -> dict:
    import torch
    from diffusers import StableDiffusionPipeline

    from studio.diffusion.noise import image_noise
    from studio.diffusion.sampling import make_scheduler, sample_latents
    from studio.models.backbone import load_pipeline

    pipe = load_pipeline(work / "base")
    plain = StableDiffusionPipeline(**{**pipe.components, "scheduler": make_scheduler(pipe, "dpmsolver")})
    plain.set_progress_bar_config(disable=True)
    seeds, c = [0, 1], pipe.unet.config
    ours = lambda: sample_latents(pipe, PROMPTS, 4, 5.0, seeds, "dpmsolver")  # noqa: E731
    noise = image_noise((c.in_channels, c.sample_size, c.sample_size), seeds, "cpu", torch.float32)
    theirs = lambda: plain(PROMPTS, num_inference_steps=4, guidance_scale=5.0, latents=noise,  # noqa: E731
                           output_type="latent").images
    with torch.no_grad():
        t_ours, t_plain, a, b = _median_pair(ours, theirs, repeats)
    n = len(PROMPTS)
    return {"studio_pairs_per_s": round(n / t_ours, 4), "plain_diffusers_pairs_per_s": round(n / t_plain, 4),
            "ratio": round(t_plain / t_ours, 3), "max_abs_latent_difference": float((a - b).abs().max()),
            "pairs": n, "steps": 4, "guidance": 5.0, "solver": "dpmsolver", "repeats": repeats}


def part_student(work: Path, repeats: int) -> dict:
    import torch

    from studio.diffusion.adapter import Denoiser, flow_velocity
    from studio.diffusion.flow import flow_scheduler, time_grid
    from studio.diffusion.noise import image_noise
    from studio.diffusion.prompting import encode_prompts
    from studio.diffusion.sampling import generate
    from studio.images import to_unit_hwc
    from studio.models.backbone import load_pipeline

    pipe = load_pipeline(work / "base")
    pipe.scheduler = flow_scheduler()  # a one-step student has the base's architecture and this scheduler
    t, timesteps = time_grid(1)
    c = pipe.unet.config

    def bare():
        cond = encode_prompts(pipe.tokenizer, pipe.text_encoder, PROMPTS[:1])
        x0 = image_noise((c.in_channels, c.sample_size, c.sample_size), [0], "cpu", torch.float32)
        x1 = x0 + float(t[1] - t[0]) * flow_velocity(Denoiser(pipe.unet, "flow_prediction")(x0, int(timesteps[0]),
                                                                                           cond))
        return to_unit_hwc(pipe.vae.decode(x1 / pipe.vae.config.scaling_factor).sample)

    with torch.no_grad():
        t_studio, t_bare, a, b = _median_pair(lambda: generate(pipe, PROMPTS[:1], steps=1, guidance=1.0, seed=0),
                                              bare, repeats)
    return {"studio_seconds_per_image": round(t_studio, 3), "bare_calls_seconds_per_image": round(t_bare, 3),
            "ratio": round(t_studio / t_bare, 3), "max_abs_image_difference": float(abs(a - b).max()),
            "repeats": repeats}


def part_saved(work: Path) -> dict:
    """Bytes the UNet's forward saves for the backward pass (parameters excluded), at the benchmark's
    latent size and at 512x512's 64x64, without and with checkpointing: a check of the memory model's
    scaling by the token count, independent of the allocator."""
    import torch

    from studio.models.backbone import load_pipeline

    unet, out = load_pipeline(work / "base").unet.train(), {}
    params = {p.untyped_storage().data_ptr() for p in unet.parameters()}
    for ckpt in (False, True):
        if ckpt:
            unet.enable_gradient_checkpointing()
        for size in sorted({unet.config.sample_size, 64}):
            seen = {}

            def pack(t):
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                unet(torch.randn(1, 4, size, size), 500, torch.randn(1, 77, unet.config.cross_attention_dim))
            key = f"{'checkpointing' if ckpt else 'no checkpointing'}, latents {size}x{size}"
            out[key] = round(sum(v for k, v in seen.items() if k not in params) / 1e9, 3)
    return {"saved_for_backward_gb_float32_batch_1": out}


def part_compare(work: Path) -> dict:
    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    from studio.diffusion.sampling import generate
    from studio.models.backbone import load_pipeline

    student = work / "chain" / "student"
    ref = StableDiffusionPipeline.from_pretrained(str(student), safety_checker=None)
    ref.set_progress_bar_config(disable=True)
    theirs = ref(PROMPTS[:1], num_inference_steps=1, guidance_scale=1.0, output_type="np",
                 generator=[torch.Generator().manual_seed(0)]).images
    ours = generate(load_pipeline(student), PROMPTS[:1], steps=1, guidance=1.0, seed=0)
    return {"plain_diffusers_vs_studio_sample_max_abs": float(np.abs(ours - theirs).max())}


# -- the parent: each part once, resumable ---------------------------------------------------------------

def child(part: str, work: Path, *args) -> dict:
    cmd = [sys.executable, __file__, "--part", part, "--work", str(work), *map(str, args)]
    # glibc returns every block of 64 kB or more to the system when it is freed, so resident memory
    # follows the live tensors (otherwise step 0's freed activations are reused unseen by RSS)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("RESULT ")][-1][7:])


def chain(work: Path) -> dict:
    c, lora = work / "chain", ["--lora-rank", "64", "--gradient-checkpointing", "--lora-export", "both"]
    common = ["--steps", "2", "--batch-size", "1", "--tracker", "none", "--no-progress", "--overwrite", *lora]
    pairs = ["--num", "2", "--steps", "2", "--batch-size", "2", "--shard-size", "2", "--prompts", c / "prompts.txt"]
    c.mkdir(parents=True, exist_ok=True)
    (c / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    seconds = {"pairs": studio("reflow", "pairs", "--teacher", work / "base", "--out", c / "pairs", "--guidance", 5,
                               *pairs)}
    seconds["2-RF"] = studio("reflow", "train", "--init", work / "base", "--pairs", c / "pairs", "--out", c / "2rf",
                             *common)
    seconds["pairs of the 2-RF"] = studio("reflow", "pairs", "--teacher", c / "2rf", "--solver", "euler",
                                          "--guidance", 1, "--out", c / "pairs2", *pairs)
    seconds["student + export"] = studio("reflow", "distill", "--init", c / "2rf", "--pairs", c / "pairs2", "--out",
                                         c / "student", *common)
    return {"seconds": seconds, **child("compare", work)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/sd_scale")
    ap.add_argument("--preset", default="sd15", help="tiny: a quick dry run of every part")
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--steps", type=int, default=4, help="train steps per row (the first is not timed)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--part", default="")
    ap.add_argument("rest", nargs="*")
    args = ap.parse_args()
    work = Path(args.work)
    if args.part:
        fn = {"train": lambda: part_train(work, args.rest[0], args.steps), "pairs": lambda: part_pairs(work, args.repeats),
              "student": lambda: part_student(work, args.repeats), "compare": lambda: part_compare(work),
              "saved": lambda: part_saved(work)}[args.part]
        print("RESULT " + json.dumps(fn()), flush=True)
        return
    work.mkdir(parents=True, exist_ok=True)
    partial = work / "partial.json"
    done = json.loads(partial.read_text()) if partial.is_file() else {}

    def once(key, fn):
        if key not in done:
            print(f"[sd_scale] {key} ...", flush=True)
            done[key] = fn()
            partial.write_text(json.dumps(done, indent=1))
        return done[key]

    once("build", lambda: {"seconds": studio("model", "build", "--preset", args.preset, "--resolution", args.resolution,
                                             "--out", work / "base", "--overwrite")})
    (work / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    once("pairs data", lambda: {"seconds": studio("reflow", "pairs", "--teacher", work / "base", "--prompts",
                                                  work / "prompts.txt", "--num", 2, "--steps", 2, "--batch-size", 2,
                                                  "--out", work / "pairs")})
    for row in ROWS:
        once(f"train/{row}", lambda: child("train", work, "--steps", args.steps, row))
    once("pairs speed", lambda: child("pairs", work, "--repeats", args.repeats))
    once("student speed", lambda: child("student", work, "--repeats", args.repeats))
    once("chain", lambda: chain(work))
    once("saved tensors", lambda: child("saved", work))
    base = done["train/full default"]
    rows = {row: {**done[f"train/{row}"], "peak_ratio_vs_full": round(done[f"train/{row}"]["peak_rss_gb"] /
                                                                      base["peak_rss_gb"], 3),
                  "time_ratio_vs_full": round(done[f"train/{row}"]["seconds_per_step"] / base["seconds_per_step"], 3),
                  "levers": ROWS[row]} for row in ROWS}
    write_result("sd_scale", {
        "machine": machine(), "preset": args.preset, "resolution": args.resolution, "batch_size": 1,
        "train_steps_per_row": args.steps, "repeats": args.repeats,
        "train_rows": rows, "pairs_speed": done["pairs speed"], "student_speed": done["student speed"],
        "chain": done["chain"], "saved_tensors": done["saved tensors"], "memory_model": project(rows, args.resolution, {False: "LoRA rank 64",
                                                                         True: "LoRA rank 64 + checkpointing"}),
        "goals": {"lora_ckpt_peak_at_most_0.30_of_full": rows["LoRA rank 64 + checkpointing"]["peak_ratio_vs_full"],
                  "pairs_ratio_at_least_1.0": done["pairs speed"]["ratio"],
                  "student_ratio_at_most_1.10": done["student speed"]["ratio"]},
    }, RESULTS if args.preset == "sd15" else work)  # a dry run (--preset tiny) writes into WORK


if __name__ == "__main__":
    main()
