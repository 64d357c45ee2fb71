"""Shared machinery of the latency-only exit estimators.

Every estimator sees the latencies through :func:`prepare_latencies`:

1. validate (non-empty, finite, strictly positive; ``num_exits`` in ``1..64``);
2. sort (a stable argsort; everything after this depends only on the sorted values,
   so estimates never depend on query order);
3. transform: ``log`` (default) or ``linear``, then standardise with the median and the
   inter-quartile range. Guarantee: with ``log`` the estimated exits are invariant to
   positive rescaling ``a * latency`` (and to powers ``latency ** p``, p > 0); with
   ``linear`` they are invariant to ``a * latency + b`` for ``a > 0``. Equal up to float
   rounding, i.e. except for exact numerical ties;
4. trim the sparse right tail (scheduler hiccups, docs/design.md section 9): the fit uses the
   sorted values up to the highest point that has at least ``ceil(tail_density * n)``
   (at least 3) points within one Silverman bandwidth below it; at most 10% are trimmed.
   Trimmed points lie above every boundary, so they get the last exit.

A subclass segments the kept standardised values (:meth:`LatencyEstimator._segment`)
and returns cut indices; the base maps each cut to a latency boundary (the midpoint of
its two neighbours in the transformed space: the geometric mean for ``log``) and gives
every query the exit ``searchsorted(boundaries, latency, "right")``, which is monotone
non-decreasing in latency by construction.

Fewer distinct latencies than exits (ties, constant latencies, ``n`` smaller than
``num_exits``) is not an error: the distinct values are the groups, mapped to exit
indices by :mod:`.mapping` (so a constant trace is one exit, and skipped exits stay
empty), and ``num_exits`` stays what was asked.
"""

from __future__ import annotations

import itertools
import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from attacks.exit_estimation.mapping import map_to_exits
from harness.errors import ConfigError
from harness.metrics.density import silverman_bandwidth
from harness.params import Interval, Options
from harness.protocol import ExitEstimate, ExitEstimator

TRANSFORMS = ("log", "linear")
MAX_TRIM_FRACTION = 0.1


@dataclass(frozen=True)
class PreparedLatencies:
    """Sorted latencies and their standardised transform; ``values[:kept]`` are fitted."""

    order: np.ndarray
    sorted_s: np.ndarray
    values: np.ndarray
    kept: int
    transform: str

    @property
    def fitted(self) -> np.ndarray:
        """The standardised values the detector segments (right tail trimmed)."""
        return self.values[: self.kept]


@dataclass(frozen=True)
class Segmentation:
    """A detector's answer: cut indices into the fitted values and an optional posterior."""

    cuts: np.ndarray
    posterior: np.ndarray | None = None


def validate_latencies(latency_s: object) -> np.ndarray:
    """Float64 1-D copy of ``latency_s``; ConfigError unless finite and > 0."""
    try:
        x = np.asarray(latency_s, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"exit estimation: latencies must be numeric: {exc}") from exc
    if x.ndim != 1:
        raise ConfigError(f"exit estimation: latencies must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ConfigError("exit estimation: no latencies given (empty array)")
    bad = ~np.isfinite(x)
    if bad.any():
        raise ConfigError(
            f"exit estimation: {int(bad.sum())} latencies are NaN or infinite (first at "
            f"index {int(np.argmax(bad))}); drop refused queries before estimating exits"
        )
    if (x <= 0).any():
        raise ConfigError(
            f"exit estimation: latencies must be > 0 seconds; found {int((x <= 0).sum())} "
            f"non-positive values (min {x.min()!r})"
        )
    return x


MAX_EXITS = 64


def validate_num_exits(num_exits: int | None) -> int | None:
    """``num_exits`` as an int in ``1..64`` (or None); ConfigError otherwise.

    More exits than latencies is allowed: some exits then simply receive no query.
    """
    if num_exits is None:
        return None
    if isinstance(num_exits, bool) or not isinstance(num_exits, int | np.integer):
        raise ConfigError(f"exit estimation: num_exits must be an int or None, got {num_exits!r}")
    if not 1 <= num_exits <= MAX_EXITS:
        raise ConfigError(f"exit estimation: num_exits={num_exits} is not in 1..{MAX_EXITS}")
    return int(num_exits)


def _standardise(y: np.ndarray) -> np.ndarray:
    q25, q50, q75 = np.percentile(y, [25, 50, 75])
    scale = (q75 - q25) / 1.349
    if not scale > 0:
        scale = float(np.std(y)) or 1.0
    return (y - q50) / scale


def tail_cut(z: np.ndarray, tail_density: float) -> int:
    """Number of sorted values kept once the sparse right tail is trimmed."""
    n = len(z)
    if tail_density <= 0 or n < 20:
        return n
    h = silverman_bandwidth(z)
    if h <= 0:
        return n
    need = max(3, math.ceil(tail_density * n))
    counts = np.arange(1, n + 1) - np.searchsorted(z, z - h, side="left")
    dense = np.flatnonzero(counts >= need)
    if dense.size == 0:
        return n
    return max(int(dense[-1]) + 1, n - int(MAX_TRIM_FRACTION * n))


def prepare_latencies(latency_s: np.ndarray, transform: str,
                      tail_density: float) -> PreparedLatencies:
    """Validate, sort, transform, standardise and tail-trim (see the module docstring)."""
    if transform not in TRANSFORMS:
        raise ConfigError(f"exit estimation: transform={transform!r}; choose one of {TRANSFORMS}")
    if not (isinstance(tail_density, int | float) and 0 <= tail_density < 1):
        raise ConfigError(f"exit estimation: tail_density={tail_density!r} must be in [0, 1)")
    x = validate_latencies(latency_s)
    order = np.argsort(x, kind="stable")
    sorted_s = x[order]
    y = np.log(sorted_s) if transform == "log" else sorted_s
    z = _standardise(y)
    return PreparedLatencies(order, sorted_s, z, tail_cut(z, tail_density), transform)


def boundaries_from_cuts(prep: PreparedLatencies, cuts: np.ndarray) -> np.ndarray:
    """Latency threshold per cut: midpoint of the neighbours in the transformed space."""
    cuts = np.asarray(cuts, dtype=np.int64)
    lo, hi = prep.sorted_s[cuts - 1], prep.sorted_s[cuts]
    mid = np.sqrt(lo * hi) if prep.transform == "log" else 0.5 * (lo + hi)
    return np.clip(mid, lo, hi)


def distinct_count(values: np.ndarray) -> int:
    """Number of distinct values in a sorted array."""
    return 1 + int(np.count_nonzero(np.diff(values) > 0)) if len(values) else 0


COMMON_CONSTRAINTS: dict[str, list[Any]] = {
    "max_exits": [Interval("int", 1, 64)],
    "transform": [Options(*TRANSFORMS)],
    "tail_density": [Interval("real", 0, 1, closed="left")],
}
"""Constraints of the parameters every latency estimator shares."""


class LatencyEstimator(ExitEstimator):
    """Base of the built-in detectors: preparation, mapping back, validation of answers."""

    name: ClassVar[str] = ""

    transform: str
    tail_density: float

    @abstractmethod
    def _segment(self, z: np.ndarray, num_exits: int | None,
                 rng: np.random.Generator) -> Segmentation:
        """Cut the sorted standardised values ``z`` into ``num_exits`` (or inferred) runs."""

    def _exact_groups(self) -> bool:
        """Whether, given ``num_exits``, the detector cuts exactly that many groups (else it
        may find fewer occupied ones, which :mod:`.mapping` places on the exits)."""
        return True

    def estimate(self, latency_s: np.ndarray, num_exits: int | None,
                 rng: np.random.Generator, *,
                 cost_fraction: tuple[float, ...] | None = None) -> ExitEstimate:
        """Estimate one exit per query (see the module docstring for the guarantees).

        With ``num_exits`` given but fewer distinct latencies than exits, the distinct
        values become the groups and are mapped to exit indices by
        :func:`~attacks.exit_estimation.mapping.map_to_exits` (``cost_fraction``, when
        the threat model grants it, shapes that mapping).
        """
        self.validate()
        prep = prepare_latencies(latency_s, self.transform, self.tail_density)
        n = len(prep.sorted_s)
        k = validate_num_exits(num_exits)
        distinct = distinct_count(prep.sorted_s)
        groups = None if k is None else min(k, distinct)
        if groups == 1 or distinct == 1:
            return _single_group(prep, k or 1, cost_fraction)
        z = prep.fitted
        if groups is not None and distinct_count(z) < groups:  # trimming left too few values
            prep = PreparedLatencies(prep.order, prep.sorted_s, prep.values, n, prep.transform)
            z = prep.fitted
        seg = self._segment(z, groups, rng)
        cuts = np.asarray(seg.cuts, dtype=np.int64)
        if groups is not None and (len(cuts) > groups - 1
                                   or (self._exact_groups() and len(cuts) != groups - 1)):
            raise RuntimeError(f"{self.name}: detector returned {len(cuts)} cuts, wanted "
                               f"{groups - 1}")
        if cuts.size and (cuts.min() < 1 or cuts.max() > len(z) - 1 or np.any(np.diff(cuts) < 0)):
            raise RuntimeError(f"{self.name}: detector returned invalid cuts {cuts.tolist()}")
        total = k if k is not None else len(cuts) + 1
        posterior_columns = seg.posterior
        if total > len(cuts) + 1 and len(np.unique(cuts)) < len(cuts):
            cuts, posterior_columns = np.unique(cuts), None  # empty groups carry no exit
        group_bounds = boundaries_from_cuts(prep, cuts)
        exit_of_group = np.arange(len(cuts) + 1)
        if total > len(cuts) + 1:
            edges = np.concatenate([[0], cuts, [n]])
            centers = [float(np.median(prep.sorted_s[a:b])) for a, b in itertools.pairwise(edges)]
            exit_of_group = map_to_exits(centers, total, cost_fraction)
        boundaries = expand_boundaries(group_bounds, exit_of_group, total)
        x = np.asarray(latency_s, dtype=np.float64)
        exits = np.searchsorted(boundaries, x, side="right").astype(np.int64)
        posterior = None
        if posterior_columns is not None:
            rows = np.minimum(np.arange(n), len(z) - 1)  # trimmed tail: copy the top row
            sorted_post = np.zeros((n, total))
            sorted_post[:, exit_of_group] = posterior_columns[rows]
            posterior = np.empty_like(sorted_post)
            posterior[prep.order] = sorted_post
        return ExitEstimate(boundaries, exits, total, posterior)


LOWEST, HIGHEST = 0.0, float(np.finfo(np.float64).max)


def expand_boundaries(group_bounds: np.ndarray, exit_of_group: np.ndarray,
                      num_exits: int) -> np.ndarray:
    """``num_exits - 1`` ascending boundaries under which group ``g`` gets ``exit_of_group[g]``.

    Exits no group maps to get empty latency ranges (repeated boundaries; ``0`` below the
    first group, the largest float above the last).
    """
    bounds = np.empty(num_exits - 1)
    for e in range(num_exits - 1):
        later = np.flatnonzero(exit_of_group > e)
        if len(later) == 0:
            bounds[e] = HIGHEST
        elif later[0] == 0:
            bounds[e] = LOWEST
        else:
            bounds[e] = group_bounds[later[0] - 1]
    return bounds


def _single_group(prep: PreparedLatencies, num_exits: int,
                  cost_fraction: tuple[float, ...] | None) -> ExitEstimate:
    """Every query in one group (constant latencies, one exit), mapped to its exit."""
    n = len(prep.sorted_s)
    exit_index = int(map_to_exits([float(np.median(prep.sorted_s))], num_exits, cost_fraction)[0])
    boundaries = expand_boundaries(np.empty(0), np.array([exit_index]), num_exits)
    posterior = np.zeros((n, num_exits))
    posterior[:, exit_index] = 1.0
    return ExitEstimate(boundaries, np.full(n, exit_index, dtype=np.int64), num_exits, posterior)


def peak_cuts(score: np.ndarray, count: int, min_gap: int) -> np.ndarray:
    """Indices of the ``count`` highest scores, greedily at least ``min_gap`` apart."""
    chosen: list[int] = []
    for i in np.argsort(-score, kind="stable"):
        if len(chosen) == count:
            break
        if all(abs(int(i) - c) >= min_gap for c in chosen):
            chosen.append(int(i))
    return np.sort(np.asarray(chosen, dtype=np.int64))
