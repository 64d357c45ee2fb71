"""ruptures detectors on sorted log latencies: ``ruptures`` (Dynp), ``ruptures_pelt``,
``ruptures_binseg``, ``ruptures_kernel`` (KernelCPD).

All run with ``jump=1`` (ruptures' default 5 restricts cuts to multiples of 5,
docs/design.md section 9). Inputs longer than ``max_points`` are reduced to that many evenly
spaced order statistics (Dynp is O(n^2) per segment count in Python: 7-10 minutes at
n=5,000, so its default is 200 points; the rbf kernel is O(n^2) too); a cut between two
representatives is placed at the midpoint of their values. With ``K`` given: ``n_bkps = K - 1``. Otherwise the
penalty is BIC-like, ``penalty * log(p) * var`` for ``p`` points of variance ``var``
(1 for the rbf kernel, whose costs are bounded), capped at ``max_exits`` segments
(Dynp picks the ``k`` whose penalised cost is smallest).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import ruptures as rpt

from attacks.exit_estimation.base import COMMON_CONSTRAINTS, LatencyEstimator, Segmentation
from harness.params import Interval, Options

MODELS = ("l1", "l2", "normal", "rbf")


class RupturesEstimator(LatencyEstimator):
    """Exact least-squares segmentation (ruptures Dynp) of sorted log latencies."""

    name: ClassVar[str] = "ruptures"
    algorithm: ClassVar[str] = "dynp"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **COMMON_CONSTRAINTS,
        "model": [Options(*MODELS)],
        "max_points": [Interval("int", 10, 1_000_000)],
        "penalty": [Interval("real", 0, None, closed="neither")],
        "min_size": [Interval("int", 1, 100_000)],
    }

    def __init__(self, *, model: str = "l2", max_points: int = 200, penalty: float = 3.0,
                 min_size: int = 2, max_exits: int = 8, transform: str = "log",
                 tail_density: float = 0.005) -> None:
        self.model = model
        self.max_points = max_points
        self.penalty = penalty
        self.min_size = min_size
        self.max_exits = max_exits
        self.transform = transform
        self.tail_density = tail_density

    def _detector(self) -> rpt.base.BaseEstimator:
        if self.algorithm == "dynp":
            return rpt.Dynp(model=self.model, min_size=self.min_size, jump=1)
        if self.algorithm == "binseg":
            return rpt.Binseg(model=self.model, min_size=self.min_size, jump=1)
        kernel = "linear" if self.model == "l2" else self.model
        return rpt.KernelCPD(kernel=kernel, min_size=self.min_size, jump=1)


    def _predict(self, signal: np.ndarray, num_exits: int | None) -> list[int]:
        algo = self._detector().fit(signal)
        p = len(signal)
        if num_exits is not None:
            return list(algo.predict(n_bkps=num_exits - 1))[:-1]
        var = 1.0 if self.model == "rbf" else max(float(signal.var()), 1e-12)
        pen = self.penalty * math.log(p) * var
        if self.algorithm == "dynp":
            best, best_cost = [], math.inf
            for k in range(1, min(self.max_exits, p // self.min_size) + 1):
                bkps = [] if k == 1 else list(algo.predict(n_bkps=k - 1))[:-1]
                cost = algo.cost.sum_of_costs([*bkps, p]) + pen * (k - 1)
                if cost < best_cost:
                    best, best_cost = bkps, cost
            return best
        bkps = list(algo.predict(pen=pen))[:-1]
        if len(bkps) + 1 > self.max_exits:
            bkps = list(algo.predict(n_bkps=self.max_exits - 1))[:-1]
        return bkps

    def _segment(self, z: np.ndarray, num_exits: int | None,
                 rng: np.random.Generator) -> Segmentation:
        m = len(z)
        idx = (np.unique(np.round(np.linspace(0, m - 1, self.max_points)).astype(np.int64))
               if m > self.max_points else np.arange(m))
        sub = z[idx]
        k = num_exits
        if len(sub) < 2 * self.min_size or (k is not None and k * self.min_size > len(sub)):
            return Segmentation(self._few_points(z, k))
        chosen = np.asarray(sorted(self._predict(sub.reshape(-1, 1), k)), dtype=np.int64)
        mids = 0.5 * (sub[chosen - 1] + sub[chosen])
        cuts = np.clip(np.searchsorted(z, mids, side="right"), 1, m - 1)
        return Segmentation(cuts)


    @staticmethod
    def _few_points(z: np.ndarray, k: int | None) -> np.ndarray:
        """Too few points for ``min_size``: cut at the ``k - 1`` widest gaps (none if K unknown)."""
        if k is None or k < 2:
            return np.empty(0, dtype=np.int64)
        gaps = np.diff(z)
        return np.sort(np.argsort(-gaps, kind="stable")[: k - 1] + 1).astype(np.int64)


class RupturesPeltEstimator(RupturesEstimator):
    """ruptures Pelt; with ``K`` given the penalty is bisected (25 steps) to give ``K - 1``
    breakpoints, falling back to Binseg's ``n_bkps`` if no penalty does."""

    name: ClassVar[str] = "ruptures_pelt"
    algorithm: ClassVar[str] = "pelt"

    def __init__(self, *, model: str = "l2", max_points: int = 500, penalty: float = 3.0,
                 min_size: int = 2, max_exits: int = 8, transform: str = "log",
                 tail_density: float = 0.005) -> None:
        super().__init__(model=model, max_points=max_points, penalty=penalty,
                         min_size=min_size, max_exits=max_exits, transform=transform,
                         tail_density=tail_density)

    def _detector(self) -> rpt.base.BaseEstimator:
        return rpt.Pelt(model=self.model, min_size=self.min_size, jump=1)

    def _predict(self, signal: np.ndarray, num_exits: int | None) -> list[int]:
        if num_exits is None:
            return super()._predict(signal, None)
        # Pelt has no n_bkps mode: bisect the penalty until it yields K - 1 breakpoints.
        algo = self._detector().fit(signal)
        lo, hi = 1e-9, float(len(signal)) * max(float(signal.var()), 1e-12) * 10
        for _ in range(25):
            mid = math.sqrt(lo * hi)
            bkps = list(algo.predict(pen=mid))[:-1]
            if len(bkps) == num_exits - 1:
                return bkps
            lo, hi = (mid, hi) if len(bkps) > num_exits - 1 else (lo, mid)
        binseg = rpt.Binseg(model=self.model, min_size=self.min_size, jump=1).fit(signal)
        return list(binseg.predict(n_bkps=num_exits - 1))[:-1]


class RupturesBinsegEstimator(RupturesEstimator):
    """ruptures binary segmentation (greedy, fast)."""

    name: ClassVar[str] = "ruptures_binseg"
    algorithm: ClassVar[str] = "binseg"

    def __init__(self, *, model: str = "l2", max_points: int = 2000, penalty: float = 3.0,
                 min_size: int = 2, max_exits: int = 8, transform: str = "log",
                 tail_density: float = 0.005) -> None:
        super().__init__(model=model, max_points=max_points, penalty=penalty,
                         min_size=min_size, max_exits=max_exits, transform=transform,
                         tail_density=tail_density)


class RupturesKernelEstimator(RupturesEstimator):
    """ruptures KernelCPD (C implementation): ``model='l2'`` (linear kernel) or ``'rbf'``.

    With ``rbf`` a populous exit's bulk and shoulder can become two segments (use ``bayes``).
    """

    name: ClassVar[str] = "ruptures_kernel"
    algorithm: ClassVar[str] = "kernel"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **RupturesEstimator._parameter_constraints, "model": [Options("l2", "rbf")]}

    def __init__(self, *, model: str = "rbf", max_points: int = 1000, penalty: float = 3.0,
                 min_size: int = 2, max_exits: int = 8, transform: str = "log",
                 tail_density: float = 0.005) -> None:
        super().__init__(model=model, max_points=max_points, penalty=penalty,
                         min_size=min_size, max_exits=max_exits, transform=transform,
                         tail_density=tail_density)
