"""Summary statistics shared by the leaderboard and the replica ceiling."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import stats


def mean_ci(values: Iterable[float | None]) -> dict[str, Any]:
    """Mean and 95% Student-t interval of the finite values (no interval for one value)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "ci95": [None, None], "n": 0}
    arr = np.asarray(vals, dtype=np.float64)
    mean = float(arr.mean())
    if len(arr) < 2:
        return {"mean": mean, "ci95": [None, None], "n": 1}
    half = float(stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": len(arr)}
