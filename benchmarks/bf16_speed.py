"""fp32 against bf16 autocast, ms per training step on this machine's CPU.

    python benchmarks/bf16_speed.py   # -> benchmarks/results/bf16_speed.json

Two steps, each with its optimizer update, alternated fp32/bf16 in one run, median of --repeats:
- the CDA student step: resnet18-small width 16 at batch 100 on 28x28, a no-grad teacher pass of
  the same net and a cross-entropy backward (the shape of ``studio cda eval``);
- the iCT step: ``consistency.model.SMALL_UNET`` at batch 64 on 32x32, a no-grad pass and a grad
  pass (the two passes of iCT's objective), RAdam.
Speed only: whether a method's figures hold in bf16 is a separate, per-method question.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import write_result

from consistency.model import build_unet
from studio.models.classifier import build_classifier


def cda_step():
    m, t = build_classifier("resnet18-small", 10, 16), build_classifier("resnet18-small", 10, 16).eval()
    x, y = torch.randn(100, 3, 28, 28), torch.randint(0, 10, (100,))
    opt = torch.optim.AdamW(m.parameters(), 1e-3)

    def step():
        with torch.no_grad():
            t(x)
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
        opt.zero_grad()
    return step


def ict_step():
    u = build_unet()
    x, t = torch.randn(64, 3, 32, 32), torch.rand(64) * 1000
    opt = torch.optim.RAdam(u.parameters(), 2e-4)

    def step():
        with torch.no_grad():
            u(x, t)
        u(x, t).sample.float().pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    return step


def time_ms(step, bf16: bool, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            step()
    return (time.perf_counter() - t0) / n * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.manual_seed(0)
    out = {}
    for name, make, n in (("cda_student_batch100", cda_step, 10), ("ict_unet_batch64", ict_step, 3)):
        step = make()
        for bf16 in (False, True):  # warm-up
            time_ms(step, bf16, 1)
        runs = {"fp32": [], "bf16": []}
        for _ in range(a.repeats):
            runs["fp32"].append(round(time_ms(step, False, n), 1))
            runs["bf16"].append(round(time_ms(step, True, n), 1))
        med = {k: statistics.median(v) for k, v in runs.items()}
        out[name] = {"ms_per_step_median": med, "runs": runs, "speedup": round(med["fp32"] / med["bf16"], 2)}
        print(name, out[name], flush=True)
    write_result("bf16_speed", {"what": __doc__.splitlines()[0], "command": "python benchmarks/bf16_speed.py",
                                "steps": out})


if __name__ == "__main__":
    main()
