"""CDA's curriculum on the lower bound of RandomResizedCrop's scale (Yin & Shen 2023, Sec. 3.2).

"Easy to hard": early iterations see large crops (lower bound 1.0: the whole image), later
ones the full SRe2L range down to 0.08. With milestone m over T iterations, for t < m*T

    step:    a(t) = 1.0
    linear:  a(t) = a_min + (1 - a_min) * (1 - t / (m T))
    cosine:  a(t) = a_min + (1 - a_min) * (1 + cos(pi t / (m T))) / 2

and a(t) = a_min = 0.08 from t = m*T on, as in the authors' ``recover_cda_*.py``.
``none`` is SRe2L: a(t) = 0.08 throughout.
"""

from __future__ import annotations

import math

from studio import StudioError

SCHEDULES = ("none", "step", "linear", "cosine")
MIN_SCALE, MAX_SCALE = 0.08, 1.0


def crop_scale_lower_bound(schedule: str, iteration: int, total: int, milestone: float = 1.0,
                           min_scale: float = MIN_SCALE) -> float:
    """The lower bound a(t) of the crop-area fraction at ``iteration`` (0-based) of ``total``."""
    if schedule not in SCHEDULES:
        raise StudioError(f"unknown --curriculum {schedule!r}; use one of {', '.join(SCHEDULES)}")
    if not 0.0 <= milestone <= 1.0:
        raise StudioError(f"--milestone must be in [0, 1], got {milestone}")
    end = milestone * total
    if schedule == "none" or iteration >= end:
        return min_scale
    frac = iteration / end
    if schedule == "step":
        return MAX_SCALE
    if schedule == "linear":
        return min_scale + (MAX_SCALE - min_scale) * (1.0 - frac)
    return min_scale + (MAX_SCALE - min_scale) * (1.0 + math.cos(math.pi * frac)) / 2.0
