"""Timing models (docs/design.md section 5): realistic (default), analytic, replay and live.

``realistic`` (the reproducible default, :class:`RealisticTiming`): a calibrated
deployment (:mod:`harness.timing.deployments`, ``dedicated`` by default) - the per-exit
shape live CPU traces show (a bulk, a shoulder and a sparse heavy right tail, the same
shape for every exit in log latency) and exits that sit near, not on, an affine function
of their compute cost. Calibrated from live traces and checked on held-out ones
(``benchmarks/calibrate_timing.py``), they need nothing recorded on the user's machine
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

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

import numpy as np

from harness.errors import ConfigError
from harness.params import Interval, Options, check_params, check_value
from harness.protocol import ServedModel, ServeTrace
from harness.strategy import OutputStrategy
from harness.timing.deployments import DEFAULT_DEPLOYMENT, DEPLOYMENTS, Deployment
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

    Defaults follow the live digits CNN on a 2-core CPU (docs/design.md section 9): about
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


@dataclass(frozen=True)
class RealisticTiming(TimingModel):
    """Per-exit latency as a calibrated deployment predicts it (:mod:`.deployments`).

    ``deployment`` names the calibration (``dedicated`` by default); ``base_s``,
    ``full_s``, ``spread`` and ``deviation`` override its values (None keeps them), and a
    cell that overrides any is not ranked. Exit ``k`` costs ``(base_s + cost_fraction[k] *
    full_s) * exp(deviation * d_k)``, where ``d_k`` are standard normal draws fixed by the
    cost fractions themselves (so one victim always has the same exits, another victim
    other departures); each query then waits ``exp(spread * s)`` times that, ``s`` drawn
    from the deployment's shape by inverse transform with the given generator.
    """

    deployment: str = DEFAULT_DEPLOYMENT
    base_s: float | None = None
    full_s: float | None = None
    spread: float | None = None
    deviation: float | None = None

    mode = "realistic"
    CONSTRAINTS: ClassVar[dict[str, list[Any]]] = {
        "deployment": [Options(*DEPLOYMENTS)],
        "base_s": [Interval("real", 0, 10), None],
        "full_s": [Interval("real", 0, 10, closed="right"), None],
        "spread": [Interval("real", 0, 5), None],
        "deviation": [Interval("real", 0, 1), None],
    }

    def __post_init__(self) -> None:
        check_value("timing.deployment", self.deployment, self.CONSTRAINTS["deployment"])
        check_params("timing=realistic", asdict(self), self.CONSTRAINTS)

    @property
    def calibration(self) -> Deployment:
        """The deployment with this model's overrides applied."""
        base = DEPLOYMENTS[self.deployment]
        return replace(base, **{k: v for k, v in asdict(self).items()
                                if k != "deployment" and v is not None})

    def exit_latencies(self, cost_fraction: tuple[float, ...]) -> np.ndarray:
        """The clean latency of every exit (before the per-query shape)."""
        return self.calibration.exit_latencies(cost_fraction)

    def latencies(self, exits: np.ndarray, cost_fraction: tuple[float, ...],
                  rng: np.random.Generator) -> np.ndarray:
        return self.calibration.latencies(exits, cost_fraction, rng)

    def describe(self) -> dict[str, Any]:
        """The deployment and the overrides set (a None override is not recorded)."""
        params = {k: v for k, v in asdict(self).items() if v is not None}
        return {"mode": self.mode, "params": params, "profile_hash": None}


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
