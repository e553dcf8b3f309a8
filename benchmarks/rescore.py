"""Every metric of ``studio fid`` for the saved models of the InstaFlow and CDA benchmarks (no retraining).

    python benchmarks/rescore.py   # -> benchmarks/results/rescore.json (about 75 min on 2 CPU cores)

Metrics (one pass over each side's images): FID, KID (100 subsets of min(1000, N)) with its std,
precision/recall (k = 3, equal numbers per side), per-class FID, and class agreement judged by
``ui/models/classifier`` (``studio cda squeeze --resolution 32 --width 16 --steps 2000``: the
Fashion-MNIST classifier the app ships, trained on the training split at the samples' 32x32), with
the judge's test top-1 and hash in every row. The reference is all 10,000 test images.

- InstaFlow: the models of benchmarks/results/instaflow.json as the app ships them (ui/models:
  ``teacher``, ``2-rectified-flow``, ``student``, exported by benchmarks/instaflow.py), each row at
  its steps, guidance and N with noise seed 0, its first seed. The row's FID must equal the
  benchmark's seed-0 FID (the same model and protocol; features are kept as float32 here, so to
  about 1e-3): the script checks it and records both.
- CDA: the image sets of benchmarks/results/cda_assets.tar.gz (CDA and SRe2L at IPC 50, and their
  IPC-10 prefixes, as the CDA benchmark evaluates them; CDA from the student's images at IPC 10) and
  the random real subsets of the CDA benchmark (``random_subset``, seed 0), all 28x28 as recovered;
  KID is the figure to read at these N (100 and 500), FID is biased there.
- iCT is not rescored: its models were never kept (runs/bench/ict is not committed), and its
  models are unconditional, so class agreement does not apply. Its benchmark still computes FID
  alone; the consistency-model issue that retrains it adds KID.

Resumable: each row's full result JSON is kept in runs/bench/rescore/<row>.json; rerun to continue.
``--history`` also writes the InstaFlow rows into the app's FID history (ui/models/fid_history.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
import warnings
from pathlib import Path

from _common import RESULTS, write_result

from distill.cda.commands import labelled, random_subset
from studio.data.imagefolder import folder_name
from studio.fid.run import FIDConfig, FIDOptions, compute_fid
from studio.images import make_grid, save_png
from studio.models.model_info import read_model_info

ROOT = Path("runs/bench/rescore")
MODELS = Path("ui/models")
SHIPPED = {"runs/bench/teacher": "teacher", "runs/bench/instaflow/2rf": "2-rectified-flow"}
METRICS = "fid,kid,pr,per-class,agreement"
REFERENCE = "fashion-mnist:test"


def shipped(model: str) -> Path:
    name = SHIPPED.get(model, "student" if "student" in model else None)
    if name is None:
        raise SystemExit(f"no shipped model for {model}")
    return MODELS / name


def score(name: str, fake: str, judge: Path, **opts) -> dict:
    out = ROOT / f"{name}.json"
    if not out.is_file():
        ROOT.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the small-N warnings: the N of each row is in the table
            compute_fid(FIDConfig(real=REFERENCE, fake=fake, out=str(out), opts=FIDOptions(
                metrics=METRICS, classifier=str(judge), num_real=0, **opts)))
    return json.loads(out.read_text())


def summary(r: dict) -> dict:
    a, k, pr = r["agreement"], r["kid"], r["precision_recall"]
    return {"fid": r["fid"], "kid": k["kid_mean"], "kid_std": k["kid_std"], "kid_subset_size": k["subset_size"],
            "precision": pr["precision"], "recall": pr["recall"], "pr_n_per_side": pr["n_per_side"],
            "agreement": a["agreement"], "agreement_per_class": a["per_class"],
            "per_class_fid_mean": r["per_class_fid"]["mean"], "n_real": r["n_real"], "n_fake": r["n_fake"],
            "seconds": r["seconds"], "judge": a["judge"]}


def instaflow_rows(judge: Path) -> list[dict]:
    rows = []
    for row in json.loads((RESULTS / "instaflow.json").read_text())["rows"]:
        model = shipped(row["model"])
        name = f"instaflow-{model.name}-{row['steps']}step-g{row['guidance']:g}-n{row['n']}"
        r = score(name, str(model), judge, num=row["n"], steps=row["steps"], guidance=row["guidance"], seed=0)
        bench = row.get("fid_runs", [row["fid"]])[0]
        if abs(r["fid"] - bench) > 1e-3 * bench:
            raise SystemExit(f"{name}: FID {r['fid']:.4f} differs from the benchmark's seed-0 FID {bench:.4f}; "
                             f"{model} is not the model benchmarks/instaflow.py scored")
        rows.append({"name": row["name"], "model": str(model), "steps": row["steps"], "guidance": row["guidance"],
                     "n": row["n"], "seed": 0, "benchmark_fid_seed0": bench, **summary(r)})
        print(f"{row['name']}: {rows[-1]}")
    return rows


def cda_sets() -> dict[str, Path]:
    """Image folders of the CDA benchmark: recovered sets from its asset archive, their IPC-10 prefixes
    and random real subsets (28x28, class subfolders)."""
    sets = ROOT / "cda_sets"
    with tarfile.open(RESULTS / "cda_assets.tar.gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".png") and not (sets / member.name).is_file():
                tar.extract(member, sets, filter="data")
    found = {"CDA IPC 50": sets / "cda-ipc50-it1000", "SRe2L IPC 50": sets / "sre2l-ipc50-it1000",
             "CDA from the student's images, IPC 10": sets / "cda-generator-ipc10-it1000"}
    for label, src in [("CDA IPC 10", found["CDA IPC 50"]), ("SRe2L IPC 10", found["SRe2L IPC 50"])]:
        dst = sets / f"{src.name}-first10"
        for cls in sorted(p for p in src.iterdir() if p.is_dir()):
            for png in sorted(cls.glob("*.png"))[:10]:
                if not (dst / cls.name / png.name).is_file():
                    (dst / cls.name).mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(png, dst / cls.name / png.name)
        found[label] = dst
    real = labelled("fashion-mnist", "", 28)
    for ipc in (50, 10):
        dst = sets / f"random-ipc{ipc}-seed0"
        if not (dst / "done").is_file():
            subset = random_subset(real, ipc, seed=0)
            for k, (image, label) in enumerate(zip(subset.images, subset.labels)):
                (dst / folder_name(real.class_names[label])).mkdir(parents=True, exist_ok=True)
                save_png(make_grid(image[None], nrow=1, pad=0), dst / folder_name(real.class_names[label]) /
                         f"{k:04d}.png")
            (dst / "done").write_text("")
        found[f"random real subset IPC {ipc}"] = dst
    return found


def cda_rows(judge: Path) -> list[dict]:
    rows = []
    for label, folder in cda_sets().items():
        r = score(f"cda-{folder.name}", str(folder), judge, num=0)
        rows.append({"name": label, "images": r["n_fake"], **summary(r)})
        print(f"{label}: {rows[-1]}")
    return rows


def history(rows: list[dict], judge: dict) -> None:
    from ui.history import append_record

    for r in rows:
        append_record(MODELS, {"time": "2026-12-02", "model": Path(r["model"]).name, "kind": read_model_info(r["model"])["kind"],
                               "steps": r["steps"], "guidance": r["guidance"], "reference": f"{REFERENCE} (all)",
                               "n": r["n"], "fid": round(r["fid"], 4), "kid": round(r["kid"], 6),
                               "kid_std": round(r["kid_std"], 6), "precision": round(r["precision"], 4),
                               "recall": round(r["recall"], 4), "agreement": round(r["agreement"], 2),
                               "judge_top1": judge["test_top1"], "seconds": r["seconds"],
                               "note": "benchmarks/rescore.py (seed 0)"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judge", default=str(MODELS / "classifier"), help="classifier directory (studio cda squeeze)")
    ap.add_argument("--history", action="store_true", help="also append the InstaFlow rows to the app's history")
    a = ap.parse_args()
    judge = Path(a.judge)
    if not (judge / "classifier.json").is_file():
        raise SystemExit(f"{judge} holds no classifier; train it with `studio cda squeeze --resolution 32 "
                         f"--width 16 --steps 2000 --out {judge}` (see the Makefile's models target)")
    ins, cda = instaflow_rows(judge), cda_rows(judge)
    meta = ins[0]["judge"]
    write_result("rescore", {
        "what": "every studio fid metric of the saved InstaFlow models and CDA image sets, against all 10,000 "
                "Fashion-MNIST test images", "command": "python benchmarks/rescore.py",
        "judge": meta, "metrics": METRICS, "kid": "100 subsets of min(1000, N)", "pr": "k = 3, equal N per side",
        "instaflow": ins, "cda": cda,
        "left_out": "iCT: its models are not kept (runs/bench/ict is not committed) and are unconditional"})
    if a.history:
        history(ins, meta)


if __name__ == "__main__":
    main()
