"""Consistency models on a small budget: an EDM diffusion model, ECT tuned from it, against iCT from scratch.

    python benchmarks/ect.py          # -> benchmarks/results/ect.json and ect_grid.png

Fashion-MNIST 32x32, unconditional, the ``consistency.model.SMALL_UNET`` UNet2DModel (1.1M parameters)
for every row. Stages (resumable: rerun after an interruption; models under runs/bench/ect):
1. ``studio edm train`` (``consistency.edm``): 3,000 steps, batch 64, RAdam lr 2e-4, EMA 0.999, as the
   DDPM and iCT rows of ``benchmarks/ict.py``; sigma_data measured (the data's RMS), c_noise = 0.25 ln sigma.
2. ``studio ict tune --init`` that model (``consistency.ect``), sized to a third of stage 1's wall time.
Rows: the EDM model's sampler settings (Heun, Algorithm 1, and Euler) ranked by FID at ``--sweep-n``,
the best of them at N; ECT at 1 and 2 steps (sigma_mid 0.821). FID and KID (studio.fid, tf-bilinear)
from N samples against all 10,000 test images; ms per image measured here for every row, the DDPM
row's on its untrained UNet of the same size (speed does not depend on the weights). The DDPM and iCT
FIDs are quoted from ``benchmarks/results/ict.json`` (their models were not kept).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, train_seconds, write_result
from _scoring import cached, measure, real_features, uint8

from consistency import edm
from consistency.commands import train_edm, tune_ect
from consistency.config import ECTConfig, EDMConfig, _ect_train_defaults, _edm_train_defaults
from consistency.diffusion_baseline import sample as sample_ddpm
from consistency.model import Precond, build_unet, load_model
from consistency.sampling import default_sigmas
from consistency.sampling import sample as sample_cm
from studio.images import make_grid, save_png

DEFAULT_ROOT = "runs/bench/ect"


def stages(a) -> dict:
    root = Path(a.root)
    quiet = dict(resume="latest", progress=False, tracker="none", log_every=100)
    if not (root / "edm" / "studio_model.json").is_file():
        cfg = EDMConfig(out=str(root / "edm"), dropout=0.0, train=replace(_edm_train_defaults(), **quiet))
        if train_edm(cfg) is None:
            raise SystemExit(f"interrupted in {root / 'edm'}; rerun the command to resume")
    edm_s = train_seconds(root / "edm" / "train")
    if not (root / "ect" / "studio_model.json").is_file():
        cfg = ECTConfig(init=str(root / "edm"), out=str(root / "ect"), dropout=0.0,
                        train=replace(_ect_train_defaults(), steps=a.ect_steps, **quiet))
        if tune_ect(cfg) is None:
            raise SystemExit(f"interrupted in {root / 'ect'}; rerun the command to resume")
    return {"edm": load_model(root / "edm", ("edm",)), "ect": load_model(root / "ect", ("consistency",)),
            "seconds": {"edm_train_s": edm_s, "ect_tune_s": train_seconds(root / "ect" / "train")}}


def step_costs(edm_unet, edm_pre: Precond, repeats: int, steps: int = 4) -> dict:
    """Seconds per optimizer step (batch 64, forward, backward, RAdam) of EDM pretraining and of ECT tuning,
    interleaved in this run: the wall clock of the stages themselves is shared with whatever else ran."""
    import copy

    from consistency.ect import ECTObjective
    from studio.data import load_dataset
    from studio.training.randomness import StepRandom

    data = load_dataset("fashion-mnist", resolution=32, limit=64)
    batch = data.batch(range(64))
    objs = {"edm": edm.EDMObjective(copy.deepcopy(edm_unet).train(), data, edm_pre),
            "ect": ECTObjective(copy.deepcopy(edm_unet).train(), data, edm_pre, double_every=75)}
    opts = {k: torch.optim.RAdam(o.unet.parameters(), lr=1e-5) for k, o in objs.items()}
    times = {k: [] for k in objs}
    for rep in range(repeats + 1):  # the first round warms up
        for k, o in objs.items():
            t0 = time.perf_counter()
            for i in range(steps):
                loss, _ = o.loss({"unet": o.unet}, batch, StepRandom(rep, i, 0, 0, 1, 64))
                opts[k].zero_grad()
                loss.backward()
                opts[k].step()
            if rep:
                times[k].append((time.perf_counter() - t0) / steps)
    return {f"{k}_step_s": statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ect-steps", type=int, default=600)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--sweep-n", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--root", default=DEFAULT_ROOT)
    a = p.parse_args()
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    models = stages(a)
    (edm_unet, edm_info), (ect_unet, ect_info) = models["edm"], models["ect"]
    edm_pre, ect_pre = Precond.of(edm_info), Precond.of(ect_info)
    real = real_features()

    def edm_row(steps: int, heun: bool) -> dict:
        nfe = 2 * steps - 1 if heun else steps
        return {"name": f"EDM {'Heun' if heun else 'Euler'} {steps} steps ({nfe} NFE)", "nfe": nfe,
                "make": lambda lo, n: edm.sample(edm_unet, edm_pre, n, lo, steps, heun=heun)}

    sweep = [edm_row(s, True) for s in (6, 9, 13, 18)] + [edm_row(35, False)]
    for r in sweep:
        r.update(cached(root, r["name"], a.sweep_n, lambda: measure(r["make"], a.sweep_n, real)))
        print("sweep", r["name"], round(r["fid"], 2))
    best = min(sweep, key=lambda r: r["fid"])
    ddpm = build_unet(0, 0.0).eval()
    rows = [
        {**best, "name": best["name"] + ", the sweep's best"},
        {"name": "ECT 1-step", "nfe": 1, "make": lambda lo, n: sample_cm(ect_unet, n, lo, default_sigmas(1),
                                                                          precond=ect_pre)},
        {"name": "ECT 2-step (sigma_mid 0.821)", "nfe": 2,
         "make": lambda lo, n: sample_cm(ect_unet, n, lo, default_sigmas(2), precond=ect_pre)},
    ]
    timing = rows + [{"name": "DDPM 25-step SDE-DPM-Solver++", "make": lambda lo, n: sample_ddpm(ddpm, n, lo, 25)}]
    times = {r["name"]: [] for r in timing}
    for _ in range(a.repeats):  # alternate the rows within each repeat
        for r in timing:
            t0 = time.perf_counter()
            r["make"](10**6, 64)
            times[r["name"]].append((time.perf_counter() - t0) / 64 * 1000)
    for r in rows:
        r.update(cached(root, r["name"].split(",")[0], a.n, lambda: measure(r["make"], a.n, real)))
        print(r["name"], round(r["fid"], 2), round(r["kid"], 4))
    ms = {name: statistics.median(v) for name, v in times.items()}
    cost = step_costs(edm_unet, edm_pre, a.repeats)
    tune_ratio = (a.ect_steps * cost["ect_step_s"]) / (3000 * cost["edm_step_s"])
    for r in rows:
        r["ms_per_image"] = ms[r["name"]]
    study = root.resolve() != Path(DEFAULT_ROOT).resolve()
    results = root if study else RESULTS
    save_png(make_grid(np.concatenate([uint8(r["make"](0, 10)) for r in rows]), nrow=10), results / "ect_grid.png")
    ict = json.loads((RESULTS / "ict.json").read_text())
    base, sec = rows[0]["fid"], models["seconds"]
    write_result("ect", {
        "what": "EDM pretraining + ECT tuning vs iCT from scratch, same UNet (1.1M params), Fashion-MNIST 32x32, CPU",
        "command": " ".join(["python", "benchmarks/ect.py", *sys.argv[1:]]),
        "rows": [{k: v for k, v in r.items() if k != "make"} for r in rows],
        "sweep": [{k: v for k, v in r.items() if k != "make"} for r in sweep],
        "ddpm_ms_per_image": ms[timing[-1]["name"]],
        "quoted_from_ict_json": {"rows": ict["rows"], "budget": ict["budget"], "date": ict["machine"]["date"]},
        "goals": {"ect_2step_vs_edm": rows[2]["fid"] / base, "ect_1step_vs_edm": rows[1]["fid"] / base,
                  "ect_2step_within_1.2x": rows[2]["fid"] <= 1.2 * base,
                  "ect_1step_within_1.5x": rows[1]["fid"] <= 1.5 * base,
                  "tune_vs_pretrain_time": tune_ratio, "tune_within_a_third": tune_ratio <= 1 / 3,
                  "tune_vs_pretrain_wall_clock": sec["ect_tune_s"] / sec["edm_train_s"]},
        "step_costs": {**cost, "how": "median seconds per step over --repeats rounds, EDM and ECT interleaved, "
                                      "batch 64; tune_vs_pretrain_time = ECT steps x ECT step / (3000 x EDM step)"},
        "totals": {"edm_train_s": sec["edm_train_s"], "ect_tune_s": sec["ect_tune_s"],
                   "edm_plus_ect_s": sec["edm_train_s"] + sec["ect_tune_s"],
                   "ict_from_scratch_s": ict["budget"]["ict_train_s"],
                   "ect_1step_fid": rows[1]["fid"], "ect_2step_fid": rows[2]["fid"],
                   "ict_1step_fid": ict["rows"][0]["fid"], "ict_2step_fid": ict["rows"][1]["fid"]},
        "budget": {"edm": {"steps": 3000, "batch": 64, "lr": 2e-4, "optimizer": "radam", "ema_decay": 0.999,
                           "dropout": 0.0, "sigma_data": edm_pre.sigma_data, "noise_scale": edm_pre.noise_scale},
                   "ect": {"steps": a.ect_steps, "batch": 64, "lr": 1e-4, "optimizer": "radam", "ema_decay": 0.999,
                           "dropout": 0.0, "q": 2, "k": 8, "b": 1, "stages": 8, "huber_c": 0.0}},
        "grid": f"{a.root if study else 'benchmarks/results'}/ect_grid.png (rows: EDM best, ECT 1-step, ECT 2-step)",
    }, results)


if __name__ == "__main__":
    main()
