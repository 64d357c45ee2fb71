"""Map latency clusters to exit *indices*, not ranks, when fewer clusters than exits are seen.

A victim may leave exits unused, and a trace may hold fewer distinct latencies than the
victim has exits. The ``d`` clusters found, in ascending latency, are then assigned to an
increasing subset of the ``K`` exits. Which subset: the one whose cluster latencies are
best explained by a *ladder* ``L_k = a + b * c_k`` with ``a, b >= 0`` - latency close to
affine in each exit's compute cost ``c_k`` (the cost fractions when the threat model
grants the architecture, else even spacing ``(k + 1) / K``, SDN's placement). Candidates
are scored by the squared log residual of a non-negative least-squares fit; ties go to the
smallest intercept (most of the latency explained by compute), then the lowest exits. A
single cluster has no spacing to go by and is given exit 0.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy.optimize import nnls

MAX_SUBSETS = 5000
"""Above this many candidate subsets (K choose d) the lowest exits are used."""


def ladder_costs(num_exits: int, cost_fraction: Sequence[float] | None) -> np.ndarray:
    """Each exit's cost on the ladder: the cost fractions if known and valid, else even spacing."""
    if cost_fraction is not None and len(cost_fraction) == num_exits:
        c = np.asarray(cost_fraction, dtype=np.float64)
        if np.all(np.isfinite(c)) and np.all(np.diff(c) > 0) and c[0] > 0:
            return c / c[-1]
    return (np.arange(num_exits) + 1.0) / num_exits


def _fit(centers: np.ndarray, costs: np.ndarray) -> tuple[float, float]:
    """(squared log residual, intercept share) of the best ``a + b c`` with ``a, b >= 0``."""
    design = np.column_stack([np.ones(len(costs)), costs])
    coef, _ = nnls(design / centers[:, None], np.ones(len(centers)))
    fitted = design @ coef
    if np.any(fitted <= 0):
        return float("inf"), 1.0
    residual = float(np.sum(np.log(fitted / centers) ** 2))
    return residual, float(coef[0] / max(fitted[-1], 1e-300))


def map_to_exits(centers: Sequence[float], num_exits: int,
                 cost_fraction: Sequence[float] | None = None) -> np.ndarray:
    """Exit index of each of ``d <= num_exits`` ascending cluster latencies (see module doc)."""
    centers = np.asarray(centers, dtype=np.float64)
    d = len(centers)
    if d > num_exits:
        raise ValueError(f"{d} clusters cannot map to {num_exits} exits")
    if d == num_exits or d == 0:
        return np.arange(d, dtype=np.int64)
    if d == 1:
        return np.zeros(1, dtype=np.int64)
    costs = ladder_costs(num_exits, cost_fraction)
    subsets = itertools.combinations(range(num_exits), d)
    count = 1
    for i in range(d):
        count = count * (num_exits - i) // (i + 1)
    if count > MAX_SUBSETS:
        return np.arange(d, dtype=np.int64)
    best, best_key = None, None
    for subset in subsets:
        residual, intercept = _fit(centers, costs[list(subset)])
        key = (round(residual, 9), round(intercept, 9), subset)
        if best_key is None or key < best_key:
            best, best_key = subset, key
    return np.asarray(best, dtype=np.int64)
