"""``studio fid REAL FAKE`` and ``studio fid-stats SPEC``: FID with its protocol on record.

``--metrics fid,kid,pr,per-class,agreement`` adds KID (``studio.fid.kid``), precision/recall
(``studio.fid.precision_recall``), per-class FID (labelled sides, ``studio.fid.sources``) and class
agreement (``studio.fid.agreement``, with ``--classifier``), computed with FID from one pass over
each side's images (``studio.fid.passes``); the features and labels are cached like the statistics.
Memory is bounded by the features: N x 8 kB per side (40 MB at N = 5,000), plus a KID subset's
three m x m kernels (24 MB at m = 1,000) and precision/recall's 1,024 x N distance chunks.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from studio import StudioError
from studio.cli.schema import option, validate
from studio.devices import resolve_device
from studio.diffusion.sampling import Solver
from studio.models.backbone import is_pipeline_dir
from studio.data import FASHION_MNIST_CLASSES, class_prompts, read_prompt_file
from studio.data.imagefolder import folder_name
from studio.fid.agreement import ClassJudge, check_classes, class_agreement
from studio.fid.extractor import FeatureExtractor, Resize
from studio.fid.frechet import frechet_distance
from studio.fid.kid import SUBSETS, kid
from studio.fid.precision_recall import K, equal_sizes, precision_recall
from studio.fid.passes import features, statistics
from studio.models.generators import generator_kind
from studio.fid.sources import Source, open_source
from studio.fid.stats import FeatureStats, save_stats
from studio.files import check_writable, write_json

BIAS_WARNING_N = 2048  # below the feature dimension the covariance is rank-deficient


@dataclass
class FIDOptions:
    """How FID reads and generates its images."""

    num: int = option(5000, "images per side (0: all of a folder or split)", ge=0)
    num_real: int | None = option(None, "images of the real (first) side, if not --num (0: all; e.g. 0 to "
                                        "compare 5,000 samples with a whole test split)", ge=0)
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
                                 "labelled sides), agreement (class agreement, --classifier); one pass per side")
    kid_subsets: int = option(SUBSETS, "KID: random subsets, drawn with --seed (mean and std over them)", ge=1)
    kid_subset_size: int = option(0, "KID: images per side in a subset (0: min(1000, N); N: the whole-set "
                                     "estimate)", ge=0)
    pr_k: int = option(K, "precision/recall: the k-th neighbour sets each ball's radius (the paper: 3)", ge=1)
    classifier: str = option("", "agreement: a classifier directory from `studio cda squeeze`, trained on the "
                                 "real data, that judges whether each sample shows its prompted class")


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


METRICS = ("fid", "kid", "pr", "per-class", "agreement")


def per_class_fid(real: tuple, fake: tuple, real_names, fake_names) -> dict:
    """FID of each class present on both sides (matched by name, as folder names: a class subfolder
    't-shirt-top' is the class 't-shirt/top'), from labelled features."""
    (f1, y1), (f2, y2) = real, fake
    fake_index = {folder_name(name): k for k, name in enumerate(fake_names)}
    out = {}
    for c, name in enumerate(real_names):
        if folder_name(name) in fake_index:
            a, b = f1[y1 == c], f2[y2 == fake_index[folder_name(name)]]
            if len(a) >= 2 and len(b) >= 2:
                out[name] = frechet_distance(*_moments(a)[:2], *_moments(b)[:2])
    return {"per_class": out, "mean": float(np.mean(list(out.values()))) if out else float("nan")}


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


def _open_pair(specs: list[str], opts: FIDOptions, nums: list[int] | None = None) -> list[Source]:
    gen = {"steps": opts.steps, "guidance": opts.guidance, "seed": opts.seed, "solver": opts.solver,
           "device": opts.device}
    data_dir = opts.data_dir or None
    nums = nums or [opts.num] * len(specs)
    generated = [is_pipeline_dir(s) or generator_kind(s) is not None for s in specs]
    first = [None if g else open_source(s, n, data_dir) for s, n, g in zip(specs, nums, generated)]
    labelled = next((s for s in first if s is not None and s.class_names), None)
    names = () if opts.prompts else tuple(labelled.class_names if labelled else FASHION_MNIST_CLASSES)
    return [s if s is not None else open_source(spec, n, data_dir, _prompts(opts, labelled), gen, names)
            for s, spec, n in zip(first, specs, nums)]


def _judge(metrics: list[str], opts: FIDOptions, fake: Source) -> ClassJudge | None:
    if "agreement" not in metrics:
        return None
    if not opts.classifier:
        raise StudioError("agreement needs --classifier DIR: a classifier trained on the real data "
                          "(`studio cda squeeze --resolution 32 --out DIR`; the app ships ui/models/classifier)")
    if fake.labels is None:
        raise StudioError(f"agreement needs class-labelled samples; {fake.spec} has none (a pipeline with the "
                          "default class prompts, not --prompts, or a folder with class subfolders)")
    judge = ClassJudge(opts.classifier, resolve_device(opts.device))
    check_classes(fake.class_names, judge.class_names)  # before the pass, not after it
    return judge


def _feature_metrics(metrics: list[str], real: Source, fake: Source, ex: FeatureExtractor, opts: FIDOptions):
    """The moments of both sides and every metric beyond FID, from one pass over each side's images."""
    if "per-class" in metrics:
        for src in (real, fake):
            if src.labels is None:
                raise StudioError(f"per-class needs labels on both sides; {src.spec} has none (a folder needs "
                                  "class subfolders, a pipeline the default class prompts, not --prompts)")
    judge = _judge(metrics, opts, fake)
    judge_real = judge is not None and real.labels is not None and judge.knows(real.class_names)  # the ceiling
    (f1, y1, p1), (f2, y2, p2) = (features(real, ex, opts, judge if judge_real else None),
                                  features(fake, ex, opts, judge))
    extra = {}
    if "per-class" in metrics:
        extra["per_class_fid"] = per_class_fid((f1, y1), (f2, y2), real.class_names, fake.class_names)
    if "kid" in metrics:
        extra["kid"] = kid(f1, f2, opts.kid_subsets, opts.kid_subset_size, opts.seed)
    if "pr" in metrics:  # on equal numbers per side, as the paper: k-NN radii shrink as N grows
        extra["precision_recall"] = precision_recall(*equal_sizes(f1, f2, opts.seed), opts.pr_k)
    if judge is not None:
        extra["agreement"] = {**class_agreement(p2, y2, fake.class_names, judge.class_names),
                              "real": (class_agreement(p1, y1, real.class_names, judge.class_names)["agreement"]
                                       if p1 is not None else None), "judge": judge.protocol}
    return _moments(f1), _moments(f2), extra


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
    real, fake = _open_pair([cfg.real, cfg.fake], opts, [opts.num if opts.num_real is None else opts.num_real,
                                                         opts.num])
    extra = {}
    if metrics == ["fid"]:
        (mu1, s1, n1), (mu2, s2, n2) = statistics(real, ex, opts), statistics(fake, ex, opts)
    else:  # one pass over each side's images serves every metric
        (mu1, s1, n1), (mu2, s2, n2), extra = _feature_metrics(metrics, real, fake, ex, opts)
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
    if "agreement" in extra:
        shown.append(f"class agreement {extra['agreement']['agreement']:.2f} % (judge test top-1 "
                     f"{extra['agreement']['judge']['test_top1']} %)")
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
    mu, sigma, n = statistics(src, ex, opts)
    _warn_small(n, cfg.spec)
    return save_stats(cfg.out, mu, sigma, n, {"source": cfg.spec, **ex.protocol})
