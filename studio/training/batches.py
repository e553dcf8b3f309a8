"""The data order: an endless stream of per-epoch permutations, indexed by global position.

Position p of the stream is sample ``perm_e[p mod N]`` with e = p div N and
``perm_e = default_rng([seed, e]).permutation(N)``. Any process can compute any batch
from its position alone, which gives exact resume and process-count independence.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=4)
def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def stream_indices(n: int, seed: int, start: int, count: int, shuffle: bool = True) -> np.ndarray:
    """Dataset indices at stream positions ``start .. start + count - 1``."""
    pos = np.arange(start, start + count)
    if not shuffle:
        return pos % n
    epochs, offsets = np.divmod(pos, n)
    out = np.empty(count, dtype=np.int64)
    for e in np.unique(epochs):
        sel = epochs == e
        out[sel] = epoch_permutation(n, seed, int(e))[offsets[sel]]
    return out
