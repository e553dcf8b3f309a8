"""FID and KID of generated images against a real feature matrix, cached per row and N (benchmark helpers)."""

from __future__ import annotations

import json
from pathlib import Path

import _common  # noqa: F401  (the checkout on sys.path)
import numpy as np
import torch

from studio.fid.extractor import FeatureExtractor
from studio.fid.frechet import frechet_distance
from studio.fid.kid import kid
from studio.fid.passes import features
from studio.fid.run import FIDOptions
from studio.fid.sources import open_source
from studio.fid.stats import FeatureStats
from studio.images import to_uint8, to_unit_hwc


def uint8(x: torch.Tensor) -> np.ndarray:
    return to_uint8(to_unit_hwc(x))


def real_features(spec: str = "fashion-mnist:test") -> np.ndarray:
    """Inception features (tf-bilinear) of every image of ``spec``, from studio.fid's feature cache."""
    real, _, _ = features(open_source(spec), FeatureExtractor(None, "tf-bilinear", "cpu"),
                          FIDOptions(num=0, metrics="kid"))
    return real


def measure(make, n: int, real: np.ndarray, batch: int = 250) -> dict:
    """FID and KID of ``n`` images of ``make(seed0, count)`` (in [-1, 1]) against the real features."""
    ex = FeatureExtractor(None, "tf-bilinear", "cpu")
    stats, parts = FeatureStats(2048), []
    for lo in range(0, n, batch):
        f = ex(uint8(make(lo, min(batch, n - lo))))
        stats.update(f)
        parts.append(f.to(torch.float32).numpy())
    mu, sigma = stats.mu_sigma()
    mu_r, sigma_r = real.mean(0), np.cov(real.astype(np.float64), rowvar=False)
    k = kid(real, np.concatenate(parts))
    return {"fid": float(frechet_distance(mu_r, sigma_r, mu, sigma)), "kid": k["kid_mean"], "kid_std": k["kid_std"],
            "n": n}


def cached(root: Path, name: str, n: int, compute) -> dict:
    """``compute()``'s figures, kept in root/fid/NAME_nN.json (a model change needs its cache file deleted)."""
    path = root / "fid" / f"{name.replace(' ', '_')}_n{n}.json"
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(compute()))
    return json.loads(path.read_text())
