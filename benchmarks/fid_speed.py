"""FID feature extraction: `studio fid`'s extractor against a bare torchmetrics update loop.

Both see the same uint8 images (Fashion-MNIST test vs train, padded to 32x32) with the same
converted Inception weights and the same TF-style resize; timed alternately in one run, the
median over repeats of (bare s/img) / (studio s/img) is reported together with the relative
difference of the two FID values. Goal: >= 1.5x at a relative FID difference <= 1e-4.

It also computes the sanity figure FID(Fashion-MNIST train, test) at 5,000 images each through
`studio fid` (reference statistics are cached, so a rerun reuses them).

    python benchmarks/fid_speed.py [--num 128 --repeats 3 --sanity-num 5000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from _common import write_result
from studio.data import load_dataset
from studio.fid.extractor import FeatureExtractor, to_uint8_rgb
from studio.fid.frechet import frechet_distance
from studio.fid.inception import FIDInceptionV3, resolve_weights
from studio.fid.run import FIDConfig, FIDOptions, compute_fid
from studio.fid.stats import FeatureStats


def batches(images, size=64):
    return [to_uint8_rgb(images[i:i + size]) for i in range(0, len(images), size)]


def bare(real, fake, state):
    fid = FrechetInceptionDistance(feature=FIDInceptionV3(state, antialias=False))
    t0 = time.perf_counter()
    with torch.no_grad():
        for b in real:
            fid.update(b, real=True)
        for b in fake:
            fid.update(b, real=False)
    n = sum(len(b) for b in real + fake)
    return (time.perf_counter() - t0) / n, float(fid.compute())


def studio(real, fake, ex):
    t0 = time.perf_counter()
    stats = []
    for side in (real, fake):
        st = FeatureStats(2048)
        for b in side:
            st.update(ex(b))
        stats.append(st.mu_sigma())
    n = sum(len(b) for b in real + fake)
    return (time.perf_counter() - t0) / n, frechet_distance(*stats[0], *stats[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=128, help="images per side")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sanity-num", type=int, default=5000, help="0 skips the train-vs-test figure")
    args = ap.parse_args()
    real = batches(load_dataset("fashion-mnist:test", limit=args.num).images)
    fake = batches(load_dataset("fashion-mnist:train", limit=args.num).images)
    state, _ = resolve_weights()
    ex = FeatureExtractor()
    rows = []
    for _ in range(args.repeats):
        tb, fb = bare(real, fake, state)
        ts, fs = studio(real, fake, ex)
        rows.append({"bare_s_per_img": tb, "studio_s_per_img": ts, "speedup": tb / ts,
                     "fid_bare": fb, "fid_studio": fs, "fid_rel_diff": abs(fs - fb) / abs(fb)})
    med = statistics.median(r["speedup"] for r in rows)
    sanity = None
    if args.sanity_num:
        r = compute_fid(FIDConfig("fashion-mnist:train", "fashion-mnist:test", opts=FIDOptions(num=args.sanity_num)))
        sanity = {k: r[k] for k in ("fid", "n_real", "n_fake", "protocol")}
    write_result("fid", {
        "what": "Inception feature extraction + FID, studio extractor vs bare torchmetrics update loop, CPU",
        "command": "python benchmarks/fid_speed.py", "images_per_side": args.num, "repeats": rows,
        "median_speedup": med, "max_fid_rel_diff": max(r["fid_rel_diff"] for r in rows),
        "goal": ">= 1.5x at relative FID difference <= 1e-4",
        "note": "N per side is far below 2048: the FID value itself is biased; only the equality matters here",
        "sanity_fashion_mnist_train_vs_test": sanity,
    })
    print(f"median speedup {med:.2f}x, max relative FID difference {max(r['fid_rel_diff'] for r in rows):.2e}")


if __name__ == "__main__":
    main()
