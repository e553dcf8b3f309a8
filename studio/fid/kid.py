"""Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs", sec. 4 and appendix).

KID is the squared maximum mean discrepancy between the Inception features of two image sets
under the cubic polynomial kernel k(x, y) = (x . y / d + 1)^3 (d the feature dimension), with the
unbiased estimator (Gretton et al. 2012, eq. 3) on subsets of m features from each side:

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
              - 2 sum_{i, j} k(x_i, y_j) / m^2

Unlike FID it is unbiased at small N. It is reported as the mean and standard deviation over
``subsets`` random subsets (default 100 of min(1000, N), torch-fidelity's protocol); a subset
size of N gives the whole-set estimate. Memory: three m x m float64 kernel matrices at a time
(24 MB for m = 1000), whatever N.
"""

from __future__ import annotations

import numpy as np

from studio import StudioError

SUBSETS, SUBSET_SIZE = 100, 1000


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x . y / d + 1)^3 for every pair of rows."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 estimate (the module docstring's formula) of two equal-size feature sets."""
    m = len(x)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.sum() / (m * m))


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = SUBSETS, subset_size: int = 0,
        seed: int = 0) -> dict:
    """KID mean and std over ``subsets`` subsets of ``subset_size`` features per side (0: min(1000, N)).
    Subsets are drawn without replacement with NumPy's ``RandomState(seed)``, as torch-fidelity does."""
    n = min(len(real), len(fake))
    size = subset_size or min(SUBSET_SIZE, n)
    if size < 2:
        raise StudioError(f"KID needs at least 2 images per side, got {n}")
    if size > n:
        raise StudioError(f"--kid-subset-size {size} is above the number of images per side ({len(real)} and "
                          f"{len(fake)}); pass a size of at most {n} or more images")
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        a = real[rng.choice(len(real), size, replace=False)]
        b = fake[rng.choice(len(fake), size, replace=False)]
        values.append(mmd2_unbiased(a, b))
    return {"kid_mean": float(np.mean(values)), "kid_std": float(np.std(values)), "subsets": subsets,
            "subset_size": size}
