"""``true_exits``: the reference estimator that is handed the true exits (an upper bound).

It cannot compute anything from latencies alone: :meth:`TrueExitsEstimator.estimate`
needs ``true_exits`` (a reference attack passes the served exits it may read) and
returns them unchanged. Its boundaries are the transformed-space midpoints
(geometric means for ``log``) between the medians of consecutive non-empty exit groups;
an empty exit repeats the previous boundary.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from attacks.exit_estimation.base import validate_latencies, validate_num_exits
from harness.errors import ConfigError
from harness.params import Options
from harness.protocol import ExitEstimate, ExitEstimator


class TrueExitsEstimator(ExitEstimator):
    """Returns the true exits; ``reference = True`` (reference attacks only)."""

    name: ClassVar[str] = "true_exits"
    reference: ClassVar[bool] = True
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {"transform": [Options("log", "linear")]}

    def __init__(self, *, transform: str = "log") -> None:
        self.transform = transform

    def estimate(self, latency_s: np.ndarray, num_exits: int | None,
                 rng: np.random.Generator, true_exits: np.ndarray | None = None, *,
                 cost_fraction: tuple[float, ...] | None = None) -> ExitEstimate:
        """The true exits (required) with boundaries between the exit groups."""
        if true_exits is None:
            raise ConfigError(
                "exit estimator 'true_exits' is a reference that needs the true exits: call "
                "estimate(latency_s, num_exits, rng, true_exits=...)"
            )
        self.validate()
        x = validate_latencies(latency_s)
        exits = np.asarray(true_exits)
        if exits.shape != x.shape or not np.issubdtype(exits.dtype, np.integer):
            raise ConfigError(f"exit estimator 'true_exits': true_exits must be integers of shape "
                              f"{x.shape}, got {exits.dtype} {exits.shape}")
        if exits.min() < 0:
            raise ConfigError("exit estimator 'true_exits': true exits must be >= 0")
        k = validate_num_exits(num_exits)
        k = int(exits.max()) + 1 if k is None else k
        if exits.max() >= k:
            raise ConfigError(f"exit estimator 'true_exits': true exit {int(exits.max())} >= "
                              f"num_exits={k}")
        y = np.log(x) if self.transform == "log" else x
        medians = [float(np.median(y[exits == j])) if (exits == j).any() else None
                   for j in range(k)]
        bounds, last = [], None
        for j in range(1, k):
            lo = next((medians[i] for i in range(j - 1, -1, -1) if medians[i] is not None), None)
            hi = next((medians[i] for i in range(j, k) if medians[i] is not None), None)
            if lo is not None and hi is not None:
                last = 0.5 * (lo + hi)
            bounds.append(last if last is not None else float(y.min()))
        b = np.maximum.accumulate(np.asarray(bounds, dtype=np.float64)) if bounds else np.empty(0)
        b = np.exp(b) if self.transform == "log" else b
        post = np.eye(k)[exits]
        return ExitEstimate(b, exits.astype(np.int64), k, post)
