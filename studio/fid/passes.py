"""One pass over a source's images: FID statistics, or pool features with labels and class predictions.

Statistics and features of sources that can be cached (datasets and folders, not generated images)
are kept in ``cache_dir()/stats`` and ``cache_dir()/features``, keyed by the source and the feature
protocol, and written atomically. ``opts`` is a :class:`studio.fid.run.FIDOptions`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from studio import StudioError
from studio.fid.agreement import ClassJudge
from studio.fid.extractor import FeatureExtractor
from studio.fid.inception import cache_dir
from studio.fid.sources import Source
from studio.fid.stats import FeatureStats, load_stats, save_stats
from studio.files import atomic_path


def cache_file(src: Source, ex: FeatureExtractor, opts, kind: str, suffix: str) -> Path | None:
    if not (opts.cache and src.cache_key):
        return None
    key = hashlib.sha256(json.dumps([src.cache_key, ex.protocol]).encode()).hexdigest()[:24]
    return cache_dir() / kind / f"{key}{suffix}"


def stream(src: Source, ex: FeatureExtractor, opts, *consumers) -> None:
    """Feed every batch of images of ``src`` to each consumer: the one pass over its images."""
    bs = opts.batch_size or (256 if ex.device.type == "cuda" else 64)
    with tqdm(total=src.count, desc=f"images {src.spec}", unit="img") as bar:
        for batch in src.batches(bs):
            for consume in consumers:
                consume(batch)
            bar.update(len(batch))


def features(src: Source, ex: FeatureExtractor, opts, judge: ClassJudge | None = None):
    """(features, labels, predictions) of a source: (N, 2048) float32 pool features, class labels (None:
    unlabelled) and the judge's predicted classes (None: no judge), from one pass over its images. The
    features and labels are cached; with cached features a judge alone reads the images again (Inception
    never runs twice). Memory N x 8 kB per side (40 MB at N = 5,000)."""
    if src.kind == "stats":
        raise StudioError(f"{src.spec} is a statistics file; kid, pr, per-class and agreement need the images "
                          "or features, not mu and sigma (pass a folder, dataset split or pipeline, or use "
                          "--metrics fid)")
    cached = cache_file(src, ex, opts, "features", ".npz")
    preds = [] if judge is not None else None
    predict = [lambda b: preds.append(judge(b))] if judge is not None else []
    if cached is not None and cached.is_file():
        with np.load(cached, allow_pickle=False) as z:
            feats, labels = z["features"], (z["labels"] if "labels" in z.files else None)
        if predict:
            stream(src, ex, opts, *predict)
        return feats, labels, (np.concatenate(preds) if predict else None)
    parts = []
    stream(src, ex, opts, lambda b: parts.append(ex(b).to("cpu", torch.float32).numpy()), *predict)
    feats = np.concatenate(parts)
    labels = None if src.labels is None else np.asarray(src.labels, dtype=np.int64)
    if cached is not None:
        with atomic_path(cached) as tmp, open(tmp, "wb") as f:
            np.savez(f, features=feats, **({} if labels is None else {"labels": labels}))
    return feats, labels, (np.concatenate(preds) if predict else None)


def statistics(src: Source, ex: FeatureExtractor, opts):
    """(mu, sigma, n) of a source, from its file, the cache, or by streaming its images."""
    if src.kind == "stats":
        mu, sigma, n, _ = load_stats(src.spec)
        return mu, sigma, n
    cached = cache_file(src, ex, opts, "stats", ".npz")
    if cached is not None and cached.is_file():
        mu, sigma, n, _ = load_stats(cached)
        return mu, sigma, n
    stats = FeatureStats(2048)
    stream(src, ex, opts, lambda b: stats.update(ex(b)))
    mu, sigma = stats.mu_sigma()
    if cached is not None:
        save_stats(cached, mu, sigma, stats.n, {"source": src.cache_key, **ex.protocol})
    return mu, sigma, stats.n
