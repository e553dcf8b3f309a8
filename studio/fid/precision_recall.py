"""Improved precision and recall (Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric
for Assessing Generative Models", sec. 3, eq. 1-2).

Each set's manifold is the union of balls around its features, ball i of radius the distance from
phi_i to its k-th nearest neighbour in the same set (k = 3, the paper's choice). Precision is the
share of generated features inside the real manifold (fidelity), recall the share of real features
inside the generated manifold (diversity):

    f(phi, Phi) = 1 if ||phi - phi'|| <= ||phi' - NN_k(phi')|| for some phi' in Phi, else 0
    precision = mean over fake phi of f(phi, Phi_real),  recall = mean over real phi of f(phi, Phi_fake)

The paper uses VGG-16 features; the studio uses the same Inception pool features as FID (VGG-16
weights are not available offline), as torchmetrics and several later papers allow. Distances are
computed in chunks of ``CHUNK`` rows: memory CHUNK x N floats, whatever N.
"""

from __future__ import annotations

import numpy as np
import torch

from studio import StudioError

K, CHUNK = 3, 1024


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")  # exact, not the faster ||a||^2 expansion


def knn_radii(feats: torch.Tensor, k: int = K) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row."""
    if k >= len(feats):
        raise StudioError(f"precision/recall with k = {k} needs more than {k} images per side, got {len(feats)}")
    out = []
    for lo in range(0, len(feats), CHUNK):
        d = _distances(feats[lo:lo + CHUNK], feats)
        out.append(d.kthvalue(k + 1, dim=1).values)  # the row itself is its own nearest neighbour, at 0
    return torch.cat(out)


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    inside = [(_distances(points[lo:lo + CHUNK], centres) <= radii[None]).any(dim=1)
              for lo in range(0, len(points), CHUNK)]
    return float(torch.cat(inside).double().mean())


def equal_sizes(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The larger set cut to the smaller one's size by a random subset (``RandomState(seed)``, sorted):
    the paper compares equal numbers of real and generated images (50,000 each), and the k-NN radii,
    and so both figures, depend on the set sizes."""
    n = min(len(real), len(fake))

    def pick(x):
        return x if len(x) == n else x[np.sort(np.random.RandomState(seed).choice(len(x), n, replace=False))]

    return pick(real), pick(fake)


def precision_recall(real, fake, k: int = K) -> dict:
    real = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    fake = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    return {"precision": _coverage(fake, real, knn_radii(real, k)),
            "recall": _coverage(real, fake, knn_radii(fake, k)), "k": k, "n_per_side": [len(real), len(fake)]}
