"""InstaFlow on the built-in teacher: FID and ms/image of teacher, 2-RF and one-step student.

    python benchmarks/instaflow.py            # -> benchmarks/results/instaflow.json (+ grid)

Stages (each resumable; outputs under runs/bench/instaflow, rerun the command to continue):
teacher (runs/bench/teacher: unpacked from benchmarks/results/teacher_assets.tar.gz, the default-recipe
teacher of benchmarks/teacher_quality.py, or trained with the default recipe if neither is there) -> pairs from the
teacher (25-step DPM-Solver++ at the teacher's recommended guidance, --teacher-guidance) -> 2-RF -> pairs from the 2-RF (25 Euler steps,
guidance --rf-guidance) -> one-step student (l2) -> FID rows against the full Fashion-MNIST test
split (10,000 images) -> speed (median over repeats, models alternated) -> straightness.

--rf-guidance defaults to 1.0 (no CFG on the 2-RF), not InstaFlow's 1.5: the teacher's couplings
already carry the teacher's guidance, and on the old teacher (2,000 UNet steps, guidance 5) the 2-RF's
FID rose with more guidance (the "guidance_sweep" block of the result: 10 Euler steps, N=1000, beside
the teacher at N=1000).
FID rows are cached per model, steps, guidance, N and seed under runs/bench/instaflow/fid; the same
pass gives each row's KID, precision and recall and, with the app's classifier (ui/models/classifier), its
class agreement. The two rows of the goal (teacher 25-step, student) report the median FID over --fid-seeds runs whose
images use disjoint seeds (run k: image i has seed k*100000 + i).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tarfile
import statistics
import time
from dataclasses import replace
from pathlib import Path

from _common import RESULTS, write_json, write_result

from distill.reflow.config import DistillConfig, PairsConfig, ReflowTrainConfig
from distill.reflow.pairs import generate_pairs
from distill.reflow.straightness import measure
from distill.reflow.commands import train_reflow, train_student
from studio.models.backbone import is_pipeline_dir, load_pipeline
from studio.models.model_info import read_model_info, sampling_settings
from studio.data import FASHION_MNIST_CLASSES, class_prompts
from studio.fid.run import FIDConfig, FIDOptions, compute_fid
from studio.images import make_grid, save_png
from studio.diffusion.sampling import generate
from studio.teacher import TeacherConfig, train_teacher
from studio.training.config import TrainerConfig

ROOT = Path("runs/bench/instaflow")
TEACHER = Path("runs/bench/teacher")
TEACHER_ASSETS = RESULTS / "teacher_assets.tar.gz"
JUDGE = Path("ui/models/classifier")  # the app's Fashion-MNIST classifier: class agreement of the samples


def restore_teacher() -> bool:
    """Unpack the default-recipe teacher that benchmarks/teacher_quality.py packed, where TEACHER lacks one; a
    TEACHER that is another model (an older recipe) is refused, since the pairs and FIDs cached under ROOT are
    the work of the teacher they were made with."""
    if not TEACHER_ASSETS.is_file():
        return False
    with tarfile.open(TEACHER_ASSETS) as tar:
        packed = tar.extractfile("teacher/config.json").read()
        if is_pipeline_dir(TEACHER):
            here = TEACHER / "config.json"
            if here.is_file() and json.loads(here.read_bytes()) == json.loads(packed):
                return False
            raise SystemExit(f"{TEACHER} holds another teacher than {TEACHER_ASSETS}; move it and {ROOT} away "
                             "and rerun")
        tar.extractall(TEACHER.parent, filter="data")
    print(f"restored the teacher from {TEACHER_ASSETS}")
    return True


def stages(a) -> dict:
    restore_teacher()
    if not is_pipeline_dir(TEACHER):
        base = TeacherConfig()
        train_teacher(replace(base, out=str(TEACHER), train=replace(base.train, resume="latest")))
    a.teacher_guidance = a.teacher_guidance or sampling_settings(TEACHER)[1]
    t0 = time.perf_counter()
    generate_pairs(PairsConfig(teacher=str(TEACHER), num=a.pairs, steps=25, solver="dpmsolver",
                               guidance=a.teacher_guidance,
                               batch_size=128, out=str(ROOT / "pairs-teacher")))
    t1 = time.perf_counter()
    rf = ROOT / "2rf"
    if not is_pipeline_dir(rf):
        train_reflow(ReflowTrainConfig(init=str(TEACHER), pairs=str(ROOT / "pairs-teacher"), out=str(rf),
                                       sample_guidance=a.rf_guidance,
                                       train=TrainerConfig(steps=a.rf_steps, batch_size=a.batch, lr=3e-4,
                                                           warmup_steps=100, lr_schedule="cosine", ema_decay=0.999,
                                                           checkpoint_every=250, resume="latest")))
    t2 = time.perf_counter()
    pairs2 = ROOT / f"pairs-2rf-g{a.rf_guidance:g}"  # a larger --student-pairs extends this set
    generate_pairs(PairsConfig(teacher=str(rf), num=a.student_pairs, steps=25, solver="euler", guidance=a.rf_guidance,
                               seed=10**6, batch_size=128, out=str(pairs2)))
    t3 = time.perf_counter()
    student = student_dir(a)
    if not is_pipeline_dir(student):
        train_student(DistillConfig(init=str(rf), pairs=str(pairs2), out=str(student), loss="l2",
                                    train=TrainerConfig(steps=a.student_steps, batch_size=a.batch, lr=1e-4,
                                                        warmup_steps=100, lr_schedule="cosine", ema_decay=0.999,
                                                        checkpoint_every=250, resume="latest")))
    t4 = time.perf_counter()
    # seconds of the stages that ran in this invocation; a resumed run keeps earlier figures
    path = ROOT / "stage_seconds.json"
    spent = json.loads(path.read_text()) if path.is_file() else {}
    g = f"g{a.rf_guidance:g}"
    for key, s in (("pairs_teacher", t1 - t0), ("train_2rf", t2 - t1), (f"pairs_2rf_{g}", t3 - t2),
                   (f"distill_{student.name}", t4 - t3)):
        if s > 30:
            spent[key] = spent.get(key, 0.0) + round(s, 1)
    path.write_text(json.dumps(spent, indent=2))
    return spent


def student_dir(a) -> Path:
    return ROOT / f"student-g{a.rf_guidance:g}-p{a.student_pairs}-s{a.student_steps}"


def copy_pipeline(src: Path, dest: Path) -> None:
    """``src``'s pipeline without its training state (checkpoints, logs, stage folders) at ``dest``, replacing
    it; copied to a temporary folder first."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("train", "stages", "logs", "*.tmp"))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def export(dest: Path, student: Path) -> None:
    """The three pipelines without their training state, and their scored rows of instaflow.json (if any) in
    the app's FID history."""
    names = {str(TEACHER): "teacher", str(ROOT / "2rf"): "2-rectified-flow", str(student): "student"}
    for src, name in names.items():
        copy_pipeline(Path(src), dest / name)
        print(f"exported {src} -> {dest / name}")
    record_history(dest, "instaflow", names)


def unet_id(model) -> str:
    """The first 16 hex digits of the sha256 of a pipeline's UNet weights: which model a row scored."""
    return hashlib.sha256((Path(model) / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()[:16]


def record_history(dest: Path, result: str, names: dict[str, str]) -> int:
    """Append the scored rows of benchmarks/results/<result>.json whose model is exported (``names``: model
    path -> name in ``dest``) to dest's FID history, which the app shows beside each model. Only rows that
    scored these very weights count (their ``unet_id``: a retrained model has no figures yet), and a record
    already there is not repeated. Returns how many were added."""
    from ui.history import append_record, read_history  # the app's history file; benchmarks sit above ui

    path = RESULTS / f"{result}.json"
    if not path.is_file():
        return 0
    saved = json.loads(path.read_text())
    top1 = (saved.get("judge") or {}).get("test_top1")
    have = {(r["model"], r["steps"], r["guidance"], r["n"], r["fid"]) for r in read_history(dest)}
    added = 0
    for row in saved["rows"]:
        name = names.get(row["model"])
        if name is None or "fid" not in row or row.get("unet_id") != unet_id(dest / name):
            continue
        seeds = f"; median of seeds {', '.join(f'{f:.2f}' for f in row['fid_runs'])}" if "fid_runs" in row else ""
        record = {"time": saved["machine"]["date"][:10], "model": name, "kind": read_model_info(dest / name)["kind"],
                  "steps": row["steps"], "guidance": row["guidance"], "reference": "fashion-mnist:test (all 10,000)",
                  "n": row["n"], "fid": round(row["fid"], 4), "judge_top1": top1, "seconds": None,
                  "note": f"benchmarks/{result}.py, {row['name']}{seeds}",
                  **{k: round(row[k], 6) for k in ("kid", "kid_std", "precision", "recall", "agreement") if k in row}}
        if (name, record["steps"], record["guidance"], record["n"], record["fid"]) not in have:
            append_record(dest, record)
            added += 1
    return added


def fid_seeds(count: int) -> list[int]:
    """Disjoint noise seeds of a goal row (its FID is the median over them); seed 0 first."""
    return [k * 100_000 for k in range(count)]


def teacher_row(guidance: float, n: int, seeds: list[int] | None = None) -> dict:
    """The teacher's 25-step CFG row, the reference of every goal (dmd.py shares it and its cached FIDs)."""
    return {"name": "teacher 25-step CFG", "model": str(TEACHER), "steps": 25, "guidance": guidance, "n": n,
            **({"seeds": seeds} if seeds else {})}


def rows(a) -> list[dict]:
    rf, student, g = str(ROOT / "2rf"), str(student_dir(a)), a.rf_guidance
    seeds = fid_seeds(a.fid_seeds)
    return [
        teacher_row(a.teacher_guidance, a.n_main, seeds),
        {"name": "teacher 1-step CFG", "model": str(TEACHER), "steps": 1, "guidance": a.teacher_guidance,
         "n": a.n_other},
        {"name": "2-RF 25-step", "model": rf, "steps": 25, "guidance": g, "n": a.n_other},
        {"name": "2-RF 4-step", "model": rf, "steps": 4, "guidance": g, "n": a.n_other},
        {"name": "2-RF 2-step", "model": rf, "steps": 2, "guidance": g, "n": a.n_other},
        {"name": "2-RF 1-step", "model": rf, "steps": 1, "guidance": g, "n": a.n_other},
        {"name": "student 1-step", "model": student, "steps": 1, "guidance": 1.0, "n": a.n_main, "seeds": seeds},
    ]


def sweep_rows(a) -> list[dict]:
    """The 2-RF's FID against its guidance (10 Euler steps, N=1000), and the teacher at the same N."""
    rf = str(ROOT / "2rf")
    return [teacher_row(a.teacher_guidance, 1000)] + [
        {"name": f"2-RF 10-step g{g:g}", "model": rf, "steps": 10, "guidance": g, "n": 1000}
        for g in (1.0, 1.5, 2.5, 4.0)]


def fid_rows(table: list[dict]) -> dict | None:
    """FID of each row against the whole test split, from one pass that also gives KID, precision and recall
    (k = 3, equal N per side) and, where the app's class judge (JUDGE) is present, class agreement; each figure
    is the median over the row's seeds. Returns the judge's protocol (None without one). A cached result
    carries the ``unet_id`` of the weights it scored; one of other weights is set aside and scored again."""
    judge, protocol = JUDGE if (JUDGE / "classifier.json").is_file() else None, None
    for row in table:
        runs, ident = [], unet_id(row["model"])
        for seed in row.get("seeds", [0]):
            suffix = f"_s{seed}" if seed else ""
            name = f"{Path(row['model']).name}_{row['steps']}step_g{row['guidance']:g}_n{row['n']}{suffix}.json"
            out = ROOT / "fid" / name
            if out.is_file() and json.loads(out.read_text()).get("unet_id") != ident:
                stale = out.with_name(f"{out.stem}.stale-{time.strftime('%Y%m%d-%H%M%S')}.json")
                out.rename(stale)
                print(f"{out} scored other weights (or is unstamped): kept as {stale.name}, scoring again")
            if not out.is_file():
                compute_fid(FIDConfig(real="fashion-mnist:test", fake=row["model"], out=str(out),
                                      opts=FIDOptions(num=row["n"], num_real=0, steps=row["steps"],
                                                      guidance=row["guidance"], seed=seed,
                                                      metrics="fid,kid,pr" + (",agreement" if judge else ""),
                                                      classifier=str(judge or ""))))
                write_json(out, {**json.loads(out.read_text()), "unet_id": ident})  # the weights it scored
            runs.append(json.loads(out.read_text()))
        row["unet_id"] = ident
        row["fid"] = statistics.median(r["fid"] for r in runs)
        if len(runs) > 1:
            row["fid_runs"] = [r["fid"] for r in runs]
        if all("kid" in r for r in runs):
            row["kid"] = statistics.median(r["kid"]["kid_mean"] for r in runs)
            row["kid_std"] = statistics.median(r["kid"]["kid_std"] for r in runs)
        if all("precision_recall" in r for r in runs):
            row["precision"] = statistics.median(r["precision_recall"]["precision"] for r in runs)
            row["recall"] = statistics.median(r["precision_recall"]["recall"] for r in runs)
        if all("agreement" in r for r in runs):
            row["agreement"] = statistics.median(r["agreement"]["agreement"] for r in runs)
            protocol = runs[0]["agreement"]["judge"]
    return protocol


def speed(table: list[dict], repeats: int, images: int) -> None:
    """ms/image end to end (prompt -> decoded image), batch 16; models alternate within each repeat."""
    pipes = {r["model"]: load_pipeline(r["model"]) for r in table}
    prompts = [class_prompts(FASHION_MNIST_CLASSES)[k % 10] for k in range(images)]
    times = {r["name"]: [] for r in table}
    for _ in range(repeats):
        for r in table:
            t0 = time.perf_counter()
            generate(pipes[r["model"]], prompts, steps=r["steps"], guidance=r["guidance"], batch_size=16)
            times[r["name"]].append((time.perf_counter() - t0) / images * 1000)
    for r in table:
        r["ms_per_image"] = statistics.median(times[r["name"]])
        r["ms_per_image_runs"] = [round(x, 2) for x in times[r["name"]]]


def init_losses() -> dict:
    """2-RF loss of the untrained teacher UNet on 256 teacher pairs, for both output signs (a deviation in docs/reflow.md)."""
    import torch

    from distill.reflow.objective import ReflowObjective
    from distill.reflow.pairs import PairsDataset
    from studio.training.randomness import StepRandom

    pairs = PairsDataset(ROOT / "pairs-teacher")
    batch = pairs.batch(list(range(0, 2048, 8)))
    out = {}
    for sign, name in ((1.0, "studio: output = noise - data"), (-1.0, "InstaFlow code: output = data - noise")):
        pipe = load_pipeline(str(TEACHER))
        with torch.no_grad():
            pipe.unet.conv_out.weight.mul_(sign)
            pipe.unet.conv_out.bias.mul_(sign)
            obj = ReflowObjective(pipe, pairs, 0.0)
            obj.setup(torch.device("cpu"))
            losses = [obj.loss({"unet": pipe.unet}, batch, StepRandom(s, 0, 0, 0, 1, 256))[0].item() for s in range(3)]
        out[name] = sum(losses) / len(losses)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=6144, help="teacher pairs (2-RF training set)")
    p.add_argument("--student-pairs", type=int, default=18432, help="2-RF pairs (student training set)")
    p.add_argument("--rf-steps", type=int, default=2000)
    p.add_argument("--student-steps", type=int, default=20000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--teacher-guidance", type=float, default=0.0,
                   help="guidance of the teacher's pairs and rows (0: the teacher's recommended, studio_model.json)")
    p.add_argument("--rf-guidance", type=float, default=1.0, help="guidance of the 2-RF rows and its pairs")
    p.add_argument("--n-main", type=int, default=5000)
    p.add_argument("--n-other", type=int, default=2000)
    p.add_argument("--fid-seeds", type=int, default=3, help="FID runs (disjoint seeds) of the two N=n-main rows; "
                                                             "their median is reported")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--stages-only", action="store_true", help="train the models, skip FID and timing")
    p.add_argument("--export", default="", help="copy teacher, 2-RF and student pipelines into this folder "
                                                "(`make models` refreshes the app's shipped ui/models)")
    a = p.parse_args()
    timing = stages(a)
    if a.export:
        export(Path(a.export), student_dir(a))
    if a.stages_only:
        return
    table = rows(a)
    judge = fid_rows(sorted(table, key=lambda r: len(r.get("seeds", [0]))))  # one-run rows first: early figures
    sweep = sweep_rows(a)
    fid_rows(sweep)
    speed(table, a.repeats, images=64)
    straight = {
        f"teacher (guidance {a.teacher_guidance:g})": measure(load_pipeline(str(TEACHER)),
                                                             class_prompts(FASHION_MNIST_CLASSES), num=64, steps=25,
                                                             guidance=a.teacher_guidance),
        **{f"2-RF (guidance {g:g})": measure(load_pipeline(str(ROOT / "2rf")), class_prompts(FASHION_MNIST_CLASSES),
                                             num=64, steps=25, guidance=g) for g in sorted({1.5, a.rf_guidance})},
    }
    by = {r["name"]: r for r in table}
    teacher25, student = by["teacher 25-step CFG"], by["student 1-step"]
    grid_rows = []
    for r in (teacher25, by["2-RF 1-step"], student):
        grid_rows.append(generate(load_pipeline(r["model"]), class_prompts(FASHION_MNIST_CLASSES) * 1,
                                  steps=r["steps"], guidance=r["guidance"], seed=0))
    import numpy as np

    save_png(make_grid(np.concatenate(grid_rows), nrow=10), RESULTS / "instaflow_grid.png")
    payload = {
        "what": "InstaFlow pipeline on the built-in tiny teacher, Fashion-MNIST class prompts, CPU",
        "command": "python benchmarks/instaflow.py",
        "fid_reference": "Fashion-MNIST test split, all 10,000 images; FID protocol of studio.fid (tf-bilinear)",
        "rows": table,
        "metrics": "FID, KID (100 subsets of min(1000, N)), precision/recall (k = 3, equal N per side) and class "
                   "agreement from one pass per row; each the median over the row's seeds",
        "judge": judge,
        "guidance_sweep": sweep,
        "straightness": straight,
        "step0_2rf_loss_by_output_sign": init_losses(),
        "goals": {
            "student_vs_teacher_fid": student["fid"] / teacher25["fid"],
            "student_fid_within_1.10x_teacher": student["fid"] <= 1.10 * teacher25["fid"],
            "2rf_1step_vs_teacher_1step_fid": by["2-RF 1-step"]["fid"] / by["teacher 1-step CFG"]["fid"],
            "student_speedup_vs_teacher_25step": teacher25["ms_per_image"] / student["ms_per_image"],
        },
        "stage_seconds": timing,
        "settings": vars(a),
        "grid": "benchmarks/results/instaflow_grid.png (rows: teacher 25-step, 2-RF 1-step, student 1-step; "
                "one column per class)",
    }
    print(json.dumps(payload["goals"], indent=2))
    write_result("instaflow", payload)


if __name__ == "__main__":
    main()
