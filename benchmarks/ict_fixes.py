"""iCT from scratch with issue 32's fixes against the committed iCT rows, and each fix's A/B.

    python benchmarks/ict_fixes.py    # -> benchmarks/results/ict_fixes.json

Fashion-MNIST 32x32, unconditional, the ``consistency.model.SMALL_UNET`` UNet2DModel and the budget of
``benchmarks/ict.py`` (RAdam lr 2e-4, batch 64, EMA 0.999, gradient clipping 1.0). The fixes, each one
``studio ict train`` option: c_noise = 0.25 ln sigma (``--noise-scale``, against 250), sigma_data measured
from the data (``--sigma-data 0``, against 0.5), dropout 0.3 (against 0) and horizontal flips (``--flip``).
1. All four fixes at ``--steps`` (3,000, ict.json's budget); FID and KID at 1 and 2 steps from ``--n``
   samples against all 10,000 test images, as ratios to ict.json's DDPM row (today's iCT: 2.64x, 2.23x).
2. The A/B, leave one out: at ``--ab-steps`` every fix and each fix left out in turn; FID and KID at
   ``--ab-n``. A fix helps where leaving it out raises the FID. (No "none" row: row 1 against ict.json
   already measures all the fixes against none, at the full budget.)
Resumable: rerun after an interruption (models under runs/bench/ict_fixes; FIDs cached per row and N). The
JSON is rewritten as each row finishes, so an unfinished A/B shows the rows done (``ab`` of ``ab_runs``); a
row whose model folder is absent is kept from that JSON when its settings match, so a fresh checkout
resumes from the committed rows instead of retraining them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from _common import RESULTS, train_seconds, write_result
from _scoring import cached, measure, real_features

from consistency.commands import train_ict
from consistency.config import ICTConfig
from consistency.model import Precond, load_model
from consistency.sampling import default_sigmas
from consistency.sampling import sample as sample_cm
from studio.training.config import TrainerConfig

DEFAULT_ROOT = "runs/bench/ict_fixes"
# option: (today's value, the fix)
FIXES = {"noise_scale": (250.0, 0.25), "sigma_data": (0.5, 0.0), "dropout": (0.0, 0.3), "flip": (False, True)}


def settings(left_out: tuple[str, ...] = ()) -> dict:
    return {k: (old if k in left_out else new) for k, (old, new) in FIXES.items()}


def train(root: Path, name: str, steps: int, opts: dict) -> tuple:
    out = root / name
    if not (out / "studio_model.json").is_file():
        tc = TrainerConfig(steps=steps, batch_size=64, lr=2e-4, optimizer="radam", ema_decay=0.999,
                           max_grad_norm=1.0, checkpoint_every=250, log_every=250, resume="latest", progress=False,
                           tracker="none")
        if train_ict(replace(ICTConfig(out=str(out), **opts), train=tc)) is None:
            raise SystemExit(f"interrupted in {out}; rerun the command to resume")
    trained = json.loads((out / "config.json").read_text())["train"]["steps"]
    if trained != steps:
        raise SystemExit(f"{out} was trained for {trained} steps, not {steps}: pick another --root")
    unet, info = load_model(out, ("consistency",))
    return unet, Precond.of(info), train_seconds(out / "train")


def committed_rows(root: Path) -> list[dict]:
    """The rows of the committed ict_fixes.json, read once before this run rewrites that file; only for the
    default --root, whose figures that file holds."""
    path = RESULTS / "ict_fixes.json"
    if root.resolve() != Path(DEFAULT_ROOT).resolve() or not path.is_file():
        return []
    saved = json.loads(path.read_text())
    return [saved.get("full") or {}, *saved.get("ab", [])]


def committed(root: Path, name: str, steps: int, opts: dict, n: int, saved: list[dict]) -> dict | None:
    """The committed row ``name`` when its model is not on disk (a new checkout has no runs/) and it was run
    with these settings."""
    if (root / name).exists():
        return None
    for row in saved:
        if row.get("name") == name and (row["steps"], row["n"]) == (steps, n) and all(
                row[k] == v for k, v in opts.items()):
            print(name, "kept from the committed", RESULTS / "ict_fixes.json", flush=True)
            return row
    return None


def score(root: Path, name: str, steps: int, opts: dict, n: int, real, saved: list[dict]) -> dict:
    if (row := committed(root, name, steps, opts, n, saved)) is not None:
        return row
    unet, pre, seconds = train(root, name, steps, opts)
    row = {"name": name, "steps": steps, **opts, "sigma_data_used": pre.sigma_data, "train_s": seconds}
    for k in (1, 2):
        def make(lo, count, k=k):
            return sample_cm(unet, count, lo, default_sigmas(k), precond=pre)

        m = cached(root, f"{name}_{k}step", n, lambda: measure(make, n, real))
        row.update({f"fid_{k}step": m["fid"], f"kid_{k}step": m["kid"], "n": n})
        print(name, f"{k}-step", round(m["fid"], 2), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--ab-steps", type=int, default=400)
    p.add_argument("--ab-n", type=int, default=1000)
    p.add_argument("--root", default=DEFAULT_ROOT)
    a = p.parse_args()
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    saved = committed_rows(root)  # before the first report rewrites the file
    real = real_features()
    full = score(root, "all-fixes", a.steps, settings(), a.n, real, saved)
    runs = [(f"ab{a.ab_steps}-all-fixes", ())] + [(f"ab{a.ab_steps}-without-{k}", (k,)) for k in FIXES]
    ab: list[dict] = []
    report(a, root, full, ab, len(runs))  # the full row now; the A/B rows as each one finishes
    for name, left_out in runs:
        ab.append(score(root, name, a.ab_steps, settings(left_out), a.ab_n, real, saved))
        report(a, root, full, ab, len(runs))


def report(a, root: Path, full: dict, ab: list[dict], runs: int) -> None:
    ict = json.loads((RESULTS / "ict.json").read_text())
    ddpm = ict["rows"][2]["fid"]
    goals = {"ict_1step_vs_diffusion": full["fid_1step"] / ddpm, "ict_2step_vs_diffusion": full["fid_2step"] / ddpm,
             "today_1step_vs_diffusion": ict["goals"]["ict_1step_vs_diffusion"],
             "today_2step_vs_diffusion": ict["goals"]["ict_2step_vs_diffusion"]}
    goals["better_than_today"] = (goals["ict_1step_vs_diffusion"] < goals["today_1step_vs_diffusion"]
                                  and goals["ict_2step_vs_diffusion"] < goals["today_2step_vs_diffusion"])
    effects = {k: {f"fid_{s}step_without_minus_with": r[f"fid_{s}step"] - ab[0][f"fid_{s}step"] for s in (1, 2)}
               for k, r in zip(FIXES, ab[1:])}
    study = root.resolve() != Path(DEFAULT_ROOT).resolve()
    write_result("ict_fixes", {
        "what": "iCT from scratch with the fixes vs today's iCT (ict.json), same UNet and budget, Fashion-MNIST 32x32",
        "command": " ".join(["python", "benchmarks/ict_fixes.py", *sys.argv[1:]]),
        "full": full, "ab": ab, "ab_runs": runs, "effects": effects, "goals": goals,
        "quoted_from_ict_json": {"rows": ict["rows"], "date": ict["machine"]["date"]},
        "budget": {"steps": a.steps, "ab_steps": a.ab_steps, "batch": 64, "lr": 2e-4, "optimizer": "radam",
                   "ema_decay": 0.999, "max_grad_norm": 1.0, "s0": 10, "s1": 1280},
    }, root if study else RESULTS)


if __name__ == "__main__":
    main()
