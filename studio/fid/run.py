"""``studio fid REAL FAKE`` and ``studio fid-stats SPEC``: FID with its protocol on record.

``--metrics fid,kid,pr,per-class`` adds KID (``studio.fid.kid``), precision/recall
(``studio.fid.precision_recall``) and per-class FID (labelled sides, ``studio.fid.sources``),
computed with FID from one pass of Inception pool features per side; the features and labels are
cached like the statistics (``cache_dir()/features``).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from studio import StudioError
from studio.cli.schema import option, validate
from studio.devices import resolve_device
from studio.diffusion.sampling import Solver
from studio.models.backbone import is_pipeline_dir
from studio.data import FASHION_MNIST_CLASSES, class_prompts, read_prompt_file
from studio.fid.extractor import FeatureExtractor, Resize
from studio.fid.frechet import frechet_distance
from studio.fid.inception import cache_dir
from studio.fid.kid import SUBSETS, kid
from studio.fid.precision_recall import K, precision_recall
from studio.fid.sources import Source, open_source
from studio.fid.stats import FeatureStats, load_stats, save_stats
from studio.files import atomic_path, check_writable, write_json

BIAS_WARNING_N = 2048  # below the feature dimension the covariance is rank-deficient


@dataclass
class FIDOptions:
    """How FID reads and generates its images."""

    num: int = option(5000, "images per side (0: all of a folder or split)", ge=0)
    batch_size: int = option(0, "0: automatic (64 on CPU, 256 on GPU)", ge=0)
    resize: Resize = option("tf-bilinear", "tf-bilinear (torch-fidelity, TF-era papers) or pil-bicubic (clean-fid)")
    inception_weights: str = option("", "a .safetensors or .pth Inception state dict")
    data_dir: str = ""
    prompts: str = option("", "prompt file for a pipeline side (default: class prompts)")
    steps: int | None = option(None, "pipeline side: sampling steps (None: the model's recommended)", ge=1)
    guidance: float | None = option(None, "pipeline side: guidance (None: the model's recommended)", ge=0)
    seed: int = 0
    solver: Solver = "auto"
    device: str = "cpu"
    cache: bool = option(True, "cache statistics (and features, for kid/pr) of datasets and folders")
    metrics: str = option("fid", "comma-separated: fid, kid, pr (precision and recall), per-class (FID per class, "
                                 "labelled sides); all from one feature pass")
    kid_subsets: int = option(SUBSETS, "KID: random subsets, drawn with --seed (mean and std over them)", ge=1)
    kid_subset_size: int = option(0, "KID: images per side in a subset (0: min(1000, N); N: the whole-set "
                                     "estimate)", ge=0)
    pr_k: int = option(K, "precision/recall: the k-th neighbour sets each ball's radius (the paper: 3)", ge=1)


@dataclass
class FIDConfig:
    """Settings of studio fid."""

    real: str = option(help="folder, dataset split, pipeline or .npz", positional=True)
    fake: str = option(help="folder, dataset split, pipeline or .npz", positional=True)
    out: str = option("", "write the result JSON here")
    opts: FIDOptions = option(factory=FIDOptions, flatten=True)


@dataclass
class FIDStatsConfig:
    """Settings of studio fid-stats."""

    spec: str = option(help="folder, dataset split or pipeline", positional=True)
    out: str = "ref.npz"
    opts: FIDOptions = option(factory=FIDOptions, flatten=True)


METRICS = ("fid", "kid", "pr", "per-class")


def _cache_file(src: Source, ex: FeatureExtractor, opts: FIDOptions, kind: str, suffix: str) -> Path | None:
    if not (opts.cache and src.cache_key):
        return None
    key = hashlib.sha256(json.dumps([src.cache_key, ex.protocol]).encode()).hexdigest()[:24]
    return cache_dir() / kind / f"{key}{suffix}"


def _stream(src: Source, ex: FeatureExtractor, opts: FIDOptions, each) -> None:
    """Feed every batch of features of ``src`` to ``each``: the one feature pass over its images."""
    bs = opts.batch_size or (256 if ex.device.type == "cuda" else 64)
    with tqdm(total=src.count, desc=f"features {src.spec}", unit="img") as bar:
        for batch in src.batches(bs):
            each(ex(batch))
            bar.update(len(batch))


def _features(src: Source, ex: FeatureExtractor, opts: FIDOptions) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 2048) float32 pool features of a source and its labels (None: unlabelled), from the cache or one
    pass over its images; memory N x 8 kB per side (40 MB at N = 5,000)."""
    if src.kind == "stats":
        raise StudioError(f"{src.spec} is a statistics file; kid, pr and per-class need the images or features, "
                          "not mu and sigma (pass a folder, dataset split or pipeline, or use --metrics fid)")
    cached = _cache_file(src, ex, opts, "features", ".npz")
    if cached is not None and cached.is_file():
        with np.load(cached, allow_pickle=False) as z:
            return z["features"], (z["labels"] if "labels" in z.files else None)
    parts = []
    _stream(src, ex, opts, lambda f: parts.append(f.detach().to("cpu", torch.float32).numpy()))
    feats = np.concatenate(parts)
    labels = None if src.labels is None else np.asarray(src.labels, dtype=np.int64)
    if cached is not None:
        with atomic_path(cached) as tmp, open(tmp, "wb") as f:
            np.savez(f, features=feats, **({} if labels is None else {"labels": labels}))
    return feats, labels


def per_class_fid(real: tuple, fake: tuple, real_names, fake_names) -> dict:
    """FID of each class present on both sides (matched by name), from labelled features."""
    (f1, y1), (f2, y2) = real, fake
    out = {}
    for c, name in enumerate(real_names):
        if name in fake_names:
            a, b = f1[y1 == c], f2[y2 == list(fake_names).index(name)]
            if len(a) >= 2 and len(b) >= 2:
                out[name] = frechet_distance(*_moments(a)[:2], *_moments(b)[:2])
    return {"per_class": out, "mean": float(np.mean(list(out.values()))) if out else float("nan")}


def _statistics(src: Source, ex: FeatureExtractor, opts: FIDOptions):
    """(mu, sigma, n) of a source, from its file, the cache, or by streaming its images."""
    if src.kind == "stats":
        mu, sigma, n, _ = load_stats(src.spec)
        return mu, sigma, n
    cached = _cache_file(src, ex, opts, "stats", ".npz")
    if cached is not None and cached.is_file():
        mu, sigma, n, _ = load_stats(cached)
        return mu, sigma, n
    stats = FeatureStats(2048)
    _stream(src, ex, opts, stats.update)
    mu, sigma = stats.mu_sigma()
    if cached is not None:
        save_stats(cached, mu, sigma, stats.n, {"source": src.cache_key, **ex.protocol})
    return mu, sigma, stats.n


def _metrics(spec: str) -> list[str]:
    names = [m.strip() for m in spec.split(",") if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise StudioError(f"--metrics {spec!r}: choose from {', '.join(METRICS)}, comma-separated")
    return names


def _moments(feats: np.ndarray):
    stats = FeatureStats(feats.shape[1])
    stats.update(torch.from_numpy(feats))
    return (*stats.mu_sigma(), stats.n)


def _prompts(opts: FIDOptions, other: Source | None) -> list[str]:
    if opts.prompts:
        return read_prompt_file(opts.prompts)
    names = list(other.class_names) if other is not None and other.class_names else FASHION_MNIST_CLASSES
    return class_prompts(names)


def _open_pair(specs: list[str], opts: FIDOptions) -> list[Source]:
    gen = {"steps": opts.steps, "guidance": opts.guidance, "seed": opts.seed, "solver": opts.solver,
           "device": opts.device}
    data_dir = opts.data_dir or None
    first = [None if is_pipeline_dir(s) else open_source(s, opts.num, data_dir) for s in specs]
    labelled = next((s for s in first if s is not None and s.class_names), None)
    names = () if opts.prompts else tuple(labelled.class_names if labelled else FASHION_MNIST_CLASSES)
    return [s if s is not None else open_source(spec, opts.num, data_dir, _prompts(opts, labelled), gen, names)
            for s, spec in zip(first, specs)]


def _warn_small(n: int, spec: str) -> None:
    if 0 < n < BIAS_WARNING_N:
        warnings.warn(f"FID from N={n} images of {spec}: below {BIAS_WARNING_N} the estimate is strongly biased "
                      "and the covariance is rank-deficient; compare only numbers with the same N", stacklevel=2)


def compute_fid(cfg: FIDConfig) -> dict:
    validate(cfg)
    if cfg.out:
        check_writable(cfg.out)  # now, not after the whole computation
    opts = cfg.opts
    ex = FeatureExtractor(opts.inception_weights or None, opts.resize, resolve_device(opts.device))
    t0 = time.perf_counter()
    metrics = _metrics(opts.metrics)
    real, fake = _open_pair([cfg.real, cfg.fake], opts)
    extra = {}
    if metrics == ["fid"]:
        (mu1, s1, n1), (mu2, s2, n2) = _statistics(real, ex, opts), _statistics(fake, ex, opts)
    else:  # one feature pass per side serves every metric
        (f1, y1), (f2, y2) = _features(real, ex, opts), _features(fake, ex, opts)
        (mu1, s1, n1), (mu2, s2, n2) = _moments(f1), _moments(f2)
        if "per-class" in metrics:
            for src, y in ((real, y1), (fake, y2)):
                if y is None:
                    raise StudioError(f"per-class needs labels on both sides; {src.spec} has none (a folder needs "
                                      "class subfolders, a pipeline the default class prompts, not --prompts)")
            extra["per_class_fid"] = per_class_fid((f1, y1), (f2, y2), real.class_names, fake.class_names)
        if "kid" in metrics:
            extra["kid"] = kid(f1, f2, opts.kid_subsets, opts.kid_subset_size, opts.seed)
        if "pr" in metrics:
            extra["precision_recall"] = precision_recall(f1, f2, opts.pr_k)
    for n, spec in ((n1, cfg.real), (n2, cfg.fake)):
        _warn_small(n, spec)
    value = frechet_distance(mu1, s1, mu2, s2)
    result = {"fid": value, **extra, "real": cfg.real, "fake": cfg.fake, "n_real": n1, "n_fake": n2,
              "skipped_unreadable": real.skipped + fake.skipped, "protocol": ex.protocol,
              "settings": asdict(opts), "seconds": round(time.perf_counter() - t0, 2),
              "generation": {src.spec: src.generation for src in (real, fake) if src.generation}}
    shown = [f"FID {value:.4f}"]
    if "kid" in extra:
        shown.append(f"KID {extra['kid']['kid_mean']:.5f} +- {extra['kid']['kid_std']:.5f}")
    if "precision_recall" in extra:
        shown.append(f"precision {extra['precision_recall']['precision']:.3f} recall "
                     f"{extra['precision_recall']['recall']:.3f}")
    print(", ".join(shown) + f" (N real {n1}, N fake {n2}, resize {opts.resize})")
    if cfg.out:
        write_json(cfg.out, result)
    return result


def compute_stats(cfg: FIDStatsConfig) -> Path:
    validate(cfg)
    check_writable(cfg.out)  # now, not after the whole computation
    opts = cfg.opts
    ex = FeatureExtractor(opts.inception_weights or None, opts.resize, resolve_device(opts.device))
    (src,) = _open_pair([cfg.spec], opts)
    if src.kind == "stats":
        raise StudioError(f"{cfg.spec} already is a statistics file")
    mu, sigma, n = _statistics(src, ex, opts)
    _warn_small(n, cfg.spec)
    return save_stats(cfg.out, mu, sigma, n, {"source": cfg.spec, **ex.protocol})
