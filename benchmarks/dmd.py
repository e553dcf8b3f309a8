"""DMD2 on the built-in teacher: one-step FID against generator steps, from two starts, with and without GAN.

    python benchmarks/dmd.py          # -> benchmarks/results/dmd.json (+ dmd_grid.png)

Starts from the models of ``benchmarks/instaflow.py`` (run it first): its teacher is the real score and the
fake score's start, and the generator starts from the teacher or from its InstaFlow student. Four runs at
the same generator-step budget (``--gen-steps``): each start, without and with ``--gan``. A run trains in
segments of ``--segment`` generator steps (it resumes exactly and extends with ``--steps``); after each
segment its one-step pipeline is kept under runs/bench/dmd/curve and scored at N = ``--n-curve`` (seed 0),
as is the generator before training (step 0): FID against generator steps answers "does a reflow start
help distribution matching". The last models are scored at N = ``--n-main`` (seed 0), and the best of them
like the InstaFlow goal rows: the median over ``--fid-seeds`` disjoint noise seeds (seed 0 among them: a
small selection bias), against instaflow.py's goal row of the teacher at 25 steps (same row, same cached
files); ms/image at batch 16, median of alternated repeats against the teacher's 25 steps in the same run.
FIDs are cached in runs/bench/instaflow/fid (shared with instaflow.py). Rerun to resume; the JSON is
rewritten after each run.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from _common import RESULTS, train_seconds, write_json, write_result
from instaflow import TEACHER, copy_pipeline, fid_rows, fid_seeds, record_history, speed, student_dir, teacher_row

from distill.dmd.commands import train_dmd
from distill.dmd.config import DMDConfig
from distill.dmd.objective import one_step_ddim
from studio.data import FASHION_MNIST_CLASSES, class_prompts
from studio.diffusion.flow import is_flow
from studio.diffusion.sampling import generate
from studio.images import make_grid, save_png
from studio.models.backbone import is_pipeline_dir, load_pipeline, save_pipeline
from studio.models.model_info import sampling_settings, write_model_info

ROOT = Path("runs/bench/dmd")


def runs(a) -> dict[str, dict]:
    student = student_dir(argparse.Namespace(rf_guidance=1.0, student_pairs=a.student_pairs,
                                             student_steps=a.student_steps))
    return {f"{start}{'-gan' if gan else ''}": {"init": str(init), "gan": gan}
            for start, init in (("student", student), ("teacher", TEACHER)) for gan in (False, True)}


def config(a, name: str, spec: dict, gen_steps: int) -> DMDConfig:
    base = DMDConfig(teacher=str(TEACHER))
    return replace(base, init=spec["init"], gan=spec["gan"], out=str(ROOT / name), real_guidance=a.real_guidance,
                   update_ratio=a.update_ratio,
                   train=replace(base.train, steps=gen_steps * a.update_ratio, batch_size=a.batch, lr=a.lr,
                                 warmup_steps=a.warmup, resume="latest", progress=False, tracker="none"))


TRAINING = ("segment", "update_ratio", "real_guidance", "lr", "warmup", "batch", "student_pairs", "student_steps")


def check_settings(a) -> None:
    """The runs and curve points under ROOT belong to one set of training settings (runs/bench/dmd/settings.json,
    written by the first call): a rerun with others is refused, since finished points would be reused
    unchanged. --gen-steps may grow (the runs extend)."""
    ROOT.mkdir(parents=True, exist_ok=True)
    path, mine = ROOT / "settings.json", {k: getattr(a, k) for k in TRAINING}
    if not path.is_file():
        write_json(path, mine)
        return
    theirs = json.loads(path.read_text())
    changed = [f"--{k.replace('_', '-')} {theirs.get(k)} -> {v}" for k, v in mine.items() if theirs.get(k) != v]
    if changed:
        raise SystemExit(f"{ROOT} was trained with other settings ({'; '.join(changed)}): move it away to start "
                         "over, or rerun with its settings")


def start_point(spec: dict) -> Path:
    """The generator before any update, as a one-step pipeline: a flow init is its own one-step model (one Euler
    step is the generator's map); an epsilon init (the teacher) gets DMD2's one-step DDIM, whose single step
    returns the x0 estimate at timestep 999, as the exported generator does."""
    init = Path(spec["init"])
    if is_flow(json.loads((init / "scheduler" / "scheduler_config.json").read_text())):
        return init
    point = ROOT / "curve" / f"{init.name}-g0"
    if not (point / "studio_model.json").is_file():  # written last: a half-written point is rebuilt
        pipe = load_pipeline(init)
        pipe.scheduler = one_step_ddim(pipe.scheduler.config)
        save_pipeline(pipe, point)
        write_model_info(point, "one-step-student", 1, 1.0, method="dmd2", init=str(init), generator_steps=0)
    return point


def train_segments(a, name: str, spec: dict, score: bool = True) -> tuple[list[dict], float, dict | None]:
    """Train ``name`` to --gen-steps segment by segment; the curve's rows (step 0 first), the training seconds
    (the trainer's own count, summed over resumed segments) and the judge's protocol; without ``score`` only
    the training."""
    curve = [{"name": f"{name} before training", "model": str(start_point(spec)), "steps": 1, "guidance": 1.0,
              "n": a.n_curve, "generator_steps": 0}] if score else []
    for g in range(a.segment, a.gen_steps + 1, a.segment):
        point = ROOT / "curve" / f"{name}-g{g}"
        if not is_pipeline_dir(point):
            if train_dmd(config(a, name, spec, g)) is None:
                raise SystemExit(f"interrupted in {ROOT / name}; rerun to resume")
            copy_pipeline(ROOT / name, point)
        curve.append({"name": f"{name} after {g} generator steps", "model": str(point), "steps": 1, "guidance": 1.0,
                      "n": a.n_curve, "generator_steps": g})
    if not score:
        return curve, 0.0, None
    judge = fid_rows(curve)
    return curve, train_seconds(ROOT / name / "train"), judge


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gen-steps", type=int, default=600, help="generator updates of each run")
    p.add_argument("--segment", type=int, default=150, help="generator updates between curve points")
    p.add_argument("--update-ratio", type=int, default=5)
    p.add_argument("--real-guidance", type=float, default=1.75)
    p.add_argument("--lr", type=float, default=1e-4, help="DMD2: 1e-5 (see docs/dmd.md, pilot)")
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--student-pairs", type=int, default=18432, help="instaflow.py's student folder to start from")
    p.add_argument("--student-steps", type=int, default=20000)
    p.add_argument("--n-curve", type=int, default=1000)
    p.add_argument("--n-main", type=int, default=5000)
    p.add_argument("--fid-seeds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--export", default="", help="train only the best run of the committed dmd.json and copy its "
                                                "pipeline into this folder as dmd2 (`make models`); no scoring")
    a = p.parse_args()
    if a.segment <= 0 or a.gen_steps <= 0 or a.gen_steps % a.segment:
        raise SystemExit("--gen-steps and --segment must be positive, --gen-steps a multiple of --segment")
    check_settings(a)
    if a.export:
        return export(a, Path(a.export))
    curves, train_s, finals = {}, {}, []
    for name, spec in runs(a).items():
        if not is_pipeline_dir(spec["init"]):
            raise SystemExit(f"{spec['init']} is missing: run python benchmarks/instaflow.py first")
        curves[name], seconds, judge = train_segments(a, name, spec)
        train_s[name] = seconds
        last = curves[name][-1]
        finals.append({"name": f"DMD2 from the {name.replace('-gan', '')}" + (" with GAN" if spec["gan"] else ""),
                       "run": name, "model": last["model"], "steps": 1, "guidance": 1.0, "n": a.n_main,
                       "generator_steps": a.gen_steps, "train_s": seconds})
        report(a, curves, train_s, [], judge)
    judge = fid_rows(finals) or judge  # seed 0 for each run; the best is a goal row: median over --fid-seeds
    seeds = fid_seeds(a.fid_seeds)
    teacher25 = teacher_row(sampling_settings(TEACHER)[1], a.n_main, seeds)
    best = min(finals, key=lambda r: r["fid"])
    best["seeds"] = seeds
    fid_rows([best, teacher25])  # the teacher's seeds are instaflow.py's goal row (cached files shared)
    table = [teacher25, *finals]
    speed(table, a.repeats, images=64)
    prompts = class_prompts(FASHION_MNIST_CLASSES)
    grid = [generate(load_pipeline(r["model"]), prompts, steps=r["steps"], guidance=r["guidance"], seed=0)
            for r in table]
    save_png(make_grid(np.concatenate(grid), nrow=10), RESULTS / "dmd_grid.png")
    report(a, curves, train_s, table, judge)


def export(a, dest: Path) -> None:
    """Train the best run of benchmarks/results/dmd.json (resumable) and copy its final pipeline to dest/dmd2."""
    saved = RESULTS / "dmd.json"
    best = json.loads(saved.read_text()).get("goals", {}).get("best_run") if saved.is_file() else None
    if best is None:
        raise SystemExit(f"{saved} names no best run: run python benchmarks/dmd.py first")
    spec = runs(a)[best]
    if not is_pipeline_dir(spec["init"]):
        raise SystemExit(f"{spec['init']} is missing: run python benchmarks/instaflow.py first")
    train_segments(a, best, spec, score=False)
    dest.mkdir(parents=True, exist_ok=True)
    final = ROOT / "curve" / f"{best}-g{a.gen_steps}"
    copy_pipeline(final, dest / "dmd2")
    record_history(dest, "dmd", {str(final): "dmd2"})
    print(f"exported {best} -> {dest / 'dmd2'}")


def report(a, curves: dict, train_s: dict, table: list[dict], judge: dict | None = None) -> None:
    """dmd.json; ``table``: the teacher's 25-step row, then the final rows (empty until they are scored)."""
    finals = [r for r in table if "run" in r]
    best = min(finals, key=lambda r: r["fid"]) if finals else None
    goals = {}
    if best is not None:
        teacher25 = table[0]
        goals = {"best": best["name"], "best_run": best["run"],
                 "best_fid_vs_teacher_25step": best["fid"] / teacher25["fid"],
                 "teacher_parity": best["fid"] <= teacher25["fid"],
                 "speedup_vs_teacher_25step": table[0]["ms_per_image"] / best["ms_per_image"]}
    write_result("dmd", {
        "what": "DMD2 one-step generators of the built-in teacher, Fashion-MNIST class prompts, CPU",
        "command": "python benchmarks/dmd.py",
        "fid_reference": "Fashion-MNIST test split, all 10,000 images; FID protocol of studio.fid (tf-bilinear)",
        "curves": curves, "train_seconds": train_s, "rows": table, "judge": judge, "goals": goals, "settings": vars(a),
        "median": "FID of the teacher row and of the best final row is the median over the seeds in its fid_runs "
                  "(seed 0, on which the best was picked, among them); the other final rows are seed 0",
        "grid": "benchmarks/results/dmd_grid.png (rows: teacher 25-step, then each final DMD2 row; one column "
                "per class)",
    })


if __name__ == "__main__":
    main()
