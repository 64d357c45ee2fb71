"""Timing models (DESIGN section 5): realistic (default), analytic, replay and live.

``realistic`` (the reproducible default, :class:`RealisticTiming`): the per-exit shape
live CPU traces show - a bulk, a shoulder and a sparse heavy right tail, the same shape
for every exit in log latency - and exits that sit near, not on, an affine function of
their compute cost. Both are calibrated from the tuned traces of the project's live
corpus (``benchmarks/calibrate_timing.py``), need nothing recorded on the user's machine
and work for any victim from its exit cost fractions. Same seed -> same latencies.

``analytic`` (:class:`AnalyticTiming`): latency = (base + cost_fraction[exit] * full)
times multiplicative noise, log-normal with a Pareto tail: a clean, affine model.

``replay`` draws from a recorded live profile (see :mod:`harness.timing.profiles`).
``live`` (:class:`LiveTiming`) really serves each query, per sample, and reports the
measured time: its :attr:`TimingModel.measures` is True.

Every model also describes itself to defenses: :meth:`TimingModel.exit_quantiles` gives
each exit's latency quantiles under that mode (the model's, the profile's, or measured
at server start-up), which :class:`harness.stages.ServerInfo` carries.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from harness.errors import ConfigError
from harness.params import Interval, check_params
from harness.protocol import ServedModel, ServeTrace
from harness.strategy import OutputStrategy
from harness.timing.profiles import LatencyProfile

QUANTILE_SAMPLES = 2000
"""Latencies drawn per exit to describe a modelled timing's quantiles."""


class TimingModel(ABC):
    """Maps served exits to response latencies (seconds), using only the given generator."""

    mode: ClassVar[str]
    measures: ClassVar[bool] = False
    """True when latencies come from really serving each query (``live``)."""

    @abstractmethod
    def latencies(self, exits: np.ndarray, cost_fraction: tuple[float, ...],
                  rng: np.random.Generator) -> np.ndarray:
        """Latency per sample for the exits it was served from (modelled modes)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON description recorded in every result (mode, parameters, profile hash)."""

    def serve(self, served: ServedModel, x: np.ndarray, strategy: OutputStrategy | None,
              exits: np.ndarray | None) -> ServeTrace:
        """Really serve ``x`` and time it (only timing models that measure)."""
        raise ConfigError(f"timing={self.mode} models latencies; it does not serve queries")

    def exit_quantiles(self, served: ServedModel, inputs: np.ndarray, levels: tuple[float, ...],
                       rng: np.random.Generator) -> tuple[tuple[float, ...], ...]:
        """Each exit's latency at ``levels`` under this timing (drawn from the model)."""
        out = []
        for k in range(served.num_exits):
            exits = np.full(QUANTILE_SAMPLES, k, dtype=np.int64)
            sample = self.latencies(exits, served.cost_fraction, rng)
            out.append(tuple(float(v) for v in np.quantile(sample, levels)))
        return tuple(out)


@dataclass(frozen=True)
class AnalyticTiming(TimingModel):
    """Cost-proportional latency with log-normal jitter and a Pareto tail.

    Defaults follow the live digits CNN on a 2-core CPU (DESIGN section 9): about
    60 microseconds fixed overhead, 500 microseconds for the full network, 5% jitter,
    2% of queries slowed by 1.5x-10x.
    """

    base_s: float = 60e-6
    full_s: float = 500e-6
    sigma: float = 0.05
    tail_prob: float = 0.02
    tail_alpha: float = 1.5
    tail_scale: float = 0.5

    mode = "analytic"

    CONSTRAINTS: ClassVar[dict[str, list[Any]]] = {
        "base_s": [Interval("real", 0, 10)],
        "full_s": [Interval("real", 0, 10, closed="right")],
        "sigma": [Interval("real", 0, 5)],
        "tail_prob": [Interval("real", 0, 1, closed="left")],
        "tail_alpha": [Interval("real", 0, 100, closed="right")],
        "tail_scale": [Interval("real", 0, 1000)],
    }
    """Allowed values (seconds for ``base_s``/``full_s``); checked before any work."""

    def __post_init__(self) -> None:
        check_params("timing=analytic", asdict(self), self.CONSTRAINTS)

    def latencies(self, exits: np.ndarray, cost_fraction: tuple[float, ...],
                  rng: np.random.Generator) -> np.ndarray:
        exits = np.asarray(exits, dtype=np.int64)
        frac = np.asarray(cost_fraction, dtype=np.float64)[exits]
        clean = self.base_s + frac * self.full_s
        jitter = np.exp(self.sigma * rng.standard_normal(len(exits)))
        slow = rng.random(len(exits)) < self.tail_prob
        tail = 1.0 + self.tail_scale * rng.pareto(self.tail_alpha, len(exits)) * 2.0
        return clean * jitter * np.where(slow, np.maximum(tail, 1.5), 1.0)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "params": asdict(self), "profile_hash": None}


REALISTIC_LEVELS = (
    0.0005, 0.002, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.11, 0.12, 0.13,
    0.14, 0.15, 0.16, 0.17, 0.18, 0.19, 0.2, 0.21, 0.22, 0.23, 0.24, 0.25, 0.26, 0.27, 0.28, 0.29,
    0.3, 0.31, 0.32, 0.33, 0.34, 0.35, 0.36, 0.37, 0.38, 0.39, 0.4, 0.41, 0.42, 0.43, 0.44, 0.45,
    0.46, 0.47, 0.48, 0.49, 0.5, 0.51, 0.52, 0.53, 0.54, 0.55, 0.56, 0.57, 0.58, 0.59, 0.6, 0.61,
    0.62, 0.63, 0.64, 0.65, 0.66, 0.67, 0.68, 0.69, 0.7, 0.71, 0.72, 0.73, 0.74, 0.75, 0.76, 0.77,
    0.78, 0.79, 0.8, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9, 0.91, 0.92, 0.93,
    0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 0.998, 0.9995)
REALISTIC_SHAPE = (
    -0.5170, -0.4969, -0.4569, -0.4423, -0.4316, -0.4217, -0.4106, -0.3994, -0.3866, -0.3757,
    -0.3673, -0.3592, -0.3508, -0.3415, -0.3305, -0.3190, -0.3083, -0.2985, -0.2891, -0.2793,
    -0.2692, -0.2591, -0.2480, -0.2374, -0.2266, -0.2170, -0.2093, -0.2014, -0.1932, -0.1849,
    -0.1766, -0.1686, -0.1602, -0.1520, -0.1435, -0.1348, -0.1260, -0.1169, -0.1073, -0.0980,
    -0.0895, -0.0801, -0.0713, -0.0620, -0.0528, -0.0445, -0.0358, -0.0278, -0.0197, -0.0127,
    -0.0060, 0.0000, 0.0061, 0.0124, 0.0188, 0.0255, 0.0329, 0.0410, 0.0488, 0.0563, 0.0643,
    0.0722, 0.0805, 0.0883, 0.0963, 0.1046, 0.1130, 0.1218, 0.1295, 0.1375, 0.1451, 0.1533, 0.1610,
    0.1692, 0.1780, 0.1863, 0.1939, 0.2023, 0.2114, 0.2208, 0.2301, 0.2395, 0.2491, 0.2580, 0.2682,
    0.2776, 0.2874, 0.2975, 0.3084, 0.3187, 0.3302, 0.3420, 0.3540, 0.3653, 0.3767, 0.3884, 0.4017,
    0.4202, 0.4461, 0.4869, 0.6075, 1.0112, 1.5263)
"""Quantile function of log latency minus its exit's median log latency, pooled over the
quiet tuned corpus traces (one thread, no background process): ``benchmarks/
calibrate_timing.py`` prints it."""


@dataclass(frozen=True)
class RealisticTiming(TimingModel):
    """Per-exit latency with the shape and the departures from affine of live CPU traces.

    Exit ``k`` costs ``(base_s + cost_fraction[k] * full_s) * exp(deviation * d_k)``, where
    ``d_k`` are standard normal draws fixed by the cost fractions themselves (so one victim
    always has the same exits, another victim other departures); each query then waits
    ``exp(spread * s)`` times that, ``s`` drawn from the corpus shape
    :data:`REALISTIC_SHAPE` by inverse transform with the given generator.
    ``deviation=0.045`` is the robust spread of live exits around their affine fit.
    """

    base_s: float = 60e-6
    full_s: float = 500e-6
    spread: float = 1.0
    deviation: float = 0.045

    mode = "realistic"
    CONSTRAINTS: ClassVar[dict[str, list[Any]]] = {
        "base_s": [Interval("real", 0, 10)],
        "full_s": [Interval("real", 0, 10, closed="right")],
        "spread": [Interval("real", 0, 5)],
        "deviation": [Interval("real", 0, 1)],
    }

    def __post_init__(self) -> None:
        check_params("timing=realistic", asdict(self), self.CONSTRAINTS)

    def exit_latencies(self, cost_fraction: tuple[float, ...]) -> np.ndarray:
        """The clean latency of every exit (before the per-query shape)."""
        frac = np.asarray(cost_fraction, dtype=np.float64)
        key = int.from_bytes(hashlib.sha256(np.round(frac, 12).tobytes()).digest()[:8], "little")
        departures = np.random.default_rng(key).standard_normal(len(frac))
        return (self.base_s + frac * self.full_s) * np.exp(self.deviation * departures)

    def latencies(self, exits: np.ndarray, cost_fraction: tuple[float, ...],
                  rng: np.random.Generator) -> np.ndarray:
        exits = np.asarray(exits, dtype=np.int64)
        clean = self.exit_latencies(cost_fraction)[exits]
        shape = np.interp(rng.random(len(exits)), REALISTIC_LEVELS, REALISTIC_SHAPE)
        return clean * np.exp(self.spread * shape)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "params": asdict(self), "profile_hash": None}


@dataclass(frozen=True)
class ReplayTiming(TimingModel):
    """Latencies drawn (seeded) from a recorded live :class:`LatencyProfile`.

    Each served sample gets one of the latencies recorded for its exit, chosen uniformly
    with the given generator; the profile is cited by its content hash.
    """

    profile: LatencyProfile

    mode = "replay"

    def latencies(self, exits: np.ndarray, cost_fraction: tuple[float, ...],
                  rng: np.random.Generator) -> np.ndarray:
        exits = np.asarray(exits, dtype=np.int64)
        num_exits = self.profile.num_exits
        if len(cost_fraction) != num_exits:
            raise ConfigError(
                f"timing=replay: the profile of {self.profile.victim!r} has {num_exits} exits "
                f"but the served network has {len(cost_fraction)}; replay a profile of this "
                "victim (harness calibrate records one)")
        if len(exits) and (exits.min() < 0 or exits.max() >= num_exits):
            raise ConfigError(f"timing=replay: exits must lie in [0, {num_exits - 1}]; got "
                              f"values in [{exits.min()}, {exits.max()}]")
        counts = np.array([len(s) for s in self.profile.samples])
        if len(exits) and (counts[exits] == 0).any():
            raise ConfigError(f"timing=replay: profile {self.profile.hash[:12]} has no "
                              f"latencies for exit(s) {sorted(set(exits[counts[exits] == 0]))}")
        u = rng.random(len(exits))
        out = np.empty(len(exits), dtype=np.float64)
        for k in np.unique(exits):
            where = exits == k
            recorded = np.asarray(self.profile.samples[k], dtype=np.float64)
            out[where] = recorded[np.minimum((u[where] * len(recorded)).astype(np.int64),
                                             len(recorded) - 1)]
        return out

    def exit_quantiles(self, served: ServedModel, inputs: np.ndarray, levels: tuple[float, ...],
                       rng: np.random.Generator) -> tuple[tuple[float, ...], ...]:
        """The recorded latencies' quantiles per exit (no randomness)."""
        return tuple(tuple(float(v) for v in np.quantile(np.asarray(s, dtype=np.float64), levels))
                     if len(s) else tuple(float("nan") for _ in levels)
                     for s in self.profile.samples)

    def describe(self) -> dict[str, Any]:
        p = self.profile
        return {"mode": self.mode, "profile_hash": p.hash,
                "params": {"victim": p.victim, "weights_hash": p.weights_hash,
                           "backend": p.backend, "device": p.device, "num_exits": p.num_exits,
                           "samples_per_exit": [len(s) for s in p.samples]}}


@dataclass(frozen=True)
class LiveTiming(TimingModel):
    """Real per-sample early-exit serving, timed on this machine (``timing=live``).

    ``repeats`` times each sample that often (the backend aggregates them); quantiles
    for defenses are measured when the server starts, on up to ``warmup_per_exit``
    server-side inputs forced to each exit.
    """

    repeats: int = 1
    warmup_per_exit: int = 64

    mode = "live"
    measures = True

    def latencies(self, exits: np.ndarray, cost_fraction: tuple[float, ...],
                  rng: np.random.Generator) -> np.ndarray:
        raise ConfigError("timing=live measures latencies by serving; it has no model to draw "
                          "from")

    def serve(self, served: ServedModel, x: np.ndarray, strategy: OutputStrategy | None,
              exits: np.ndarray | None) -> ServeTrace:
        if exits is not None:
            return served.serve(x, exits=exits, repeats=self.repeats)
        return served.serve(x, strategy=strategy, repeats=self.repeats)

    def exit_quantiles(self, served: ServedModel, inputs: np.ndarray, levels: tuple[float, ...],
                       rng: np.random.Generator) -> tuple[tuple[float, ...], ...]:
        take = inputs[rng.permutation(len(inputs))[: self.warmup_per_exit]]
        out = []
        for k in range(served.num_exits):
            trace = served.serve(take, exits=np.full(len(take), k, dtype=np.int64),
                                 repeats=self.repeats)
            out.append(tuple(float(v) for v in np.quantile(trace.latency_s, levels)))
        return tuple(out)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "params": {"repeats": self.repeats}, "profile_hash": None}


MODELLED: dict[str, type[TimingModel]] = {"realistic": RealisticTiming, "analytic": AnalyticTiming}
"""The modelled timing modes by name (their parameters are ``timing.PARAM=`` keys)."""
