"""The Fréchet distance between two Gaussians (Heusel et al. 2017, eq. 6; Dowson & Landau 1982).

d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), computed in float64. The trace of the
matrix square root equals the sum of square roots of the eigenvalues of S1 S2 (real and
non-negative for covariance matrices up to round-off, which is clamped), as torchmetrics does;
this avoids scipy's ``sqrtm`` and its complex round-off.
"""

from __future__ import annotations

import numpy as np
import torch


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    mu1, mu2 = (torch.as_tensor(np.asarray(m), dtype=torch.float64) for m in (mu1, mu2))
    s1, s2 = (torch.as_tensor(np.asarray(s), dtype=torch.float64) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(f"mismatched statistics: mu {tuple(mu1.shape)} vs {tuple(mu2.shape)}, "
                         f"sigma {tuple(s1.shape)} vs {tuple(s2.shape)}")
    diff = mu1 - mu2
    eig = torch.linalg.eigvals(s1 @ s2).real.clamp(min=0)
    value = diff.dot(diff) + torch.trace(s1) + torch.trace(s2) - 2.0 * eig.sqrt().sum()
    return float(value)
