"""Every metric of ``studio fid`` for the saved image sets of the CDA benchmark (no retraining).

    python benchmarks/rescore.py   # -> benchmarks/results/rescore.json

Metrics (one pass over each side's images): FID, KID (100 subsets of min(1000, N)) with its std,
precision/recall (k = 3, equal numbers per side), per-class FID, and class agreement judged by
``ui/models/classifier`` (``studio cda squeeze --resolution 32 --width 16 --steps 2000``: the
Fashion-MNIST classifier the app ships, trained on the training split at the samples' 32x32), with
the judge's test top-1 and hash in every row. The reference is all 10,000 test images.

- CDA: the image sets of benchmarks/results/cda_assets.tar.gz (CDA and SRe2L at IPC 50, and their
  IPC-10 prefixes, as the CDA benchmark evaluates them; CDA from the student's images at IPC 10) and
  the random real subsets of the CDA benchmark (``random_subset``, seed 0), all 28x28 as recovered;
  KID is the figure to read at these N (100 and 500), FID is biased there.
- InstaFlow and DMD2: their benchmarks (benchmarks/instaflow.py, benchmarks/dmd.py) compute every one of
  these metrics in the pass that gives their FID, so they are not rescored here.

Resumable: each row's full result JSON is kept in runs/bench/rescore/<row>.json; rerun to continue.
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

ROOT = Path("runs/bench/rescore")
MODELS = Path("ui/models")
METRICS = "fid,kid,pr,per-class,agreement"
REFERENCE = "fashion-mnist:test"


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judge", default=str(MODELS / "classifier"), help="classifier directory (studio cda squeeze)")
    a = ap.parse_args()
    judge = Path(a.judge)
    if not (judge / "classifier.json").is_file():
        raise SystemExit(f"{judge} holds no classifier; train it with `studio cda squeeze --resolution 32 "
                         f"--width 16 --steps 2000 --out {judge}` (see the Makefile's models target)")
    cda = cda_rows(judge)
    meta = cda[0]["judge"]
    write_result("rescore", {
        "what": "every studio fid metric of the saved CDA image sets, against all 10,000 Fashion-MNIST test "
                "images", "command": "python benchmarks/rescore.py",
        "judge": meta, "metrics": METRICS, "kid": "100 subsets of min(1000, N)", "pr": "k = 3, equal N per side",
        "cda": cda,
        "left_out": "InstaFlow and DMD2: their benchmarks compute these metrics themselves; iCT: unconditional"})


if __name__ == "__main__":
    main()
