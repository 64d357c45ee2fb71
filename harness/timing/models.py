"""Timing models for the deterministic modes (DESIGN section 5).

``analytic`` (the reproducible default): latency = (base + cost_fraction[exit] * full)
times multiplicative noise. The noise is log-normal with a heavy right tail: with
probability ``tail_prob`` a query is additionally slowed by a factor ``1 + Pareto(tail_alpha)
* tail_scale``, as scheduler hiccups do on live CPUs. Same seed -> same latencies.

``replay`` draws from a recorded live profile (see :mod:`harness.timing.profiles`); ``live``
measures real serving and needs no model here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from harness.errors import ConfigError
from harness.params import Interval, check_params
from harness.timing.profiles import LatencyProfile

TIMING_MODES = ("analytic", "replay", "live")


class TimingModel(ABC):
    """Maps served exits to response latencies (seconds), using only the given generator."""

    mode: str

    @abstractmethod
    def latencies(self, exits: np.ndarray, cost_fraction: tuple[float, ...],
                  rng: np.random.Generator) -> np.ndarray:
        """Latency per sample for the exits it was served from."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON description recorded in every result (mode, parameters, profile hash)."""


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


@dataclass(frozen=True)
class ReplayTiming(TimingModel):
    """Latencies drawn (seeded) from a recorded live :class:`LatencyProfile`.

    Each served sample gets one of the latencies recorded for its exit, chosen uniformly
    with the given generator; the profile is cited by its content hash.
    """

    profile: LatencyProfile

    mode = "replay"

    @classmethod
    def from_file(cls, path: str) -> ReplayTiming:
        return cls(LatencyProfile.load(path))

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

    def describe(self) -> dict[str, Any]:
        p = self.profile
        return {"mode": self.mode, "profile_hash": p.hash,
                "params": {"victim": p.victim, "weights_hash": p.weights_hash,
                           "backend": p.backend, "device": p.device, "num_exits": p.num_exits,
                           "samples_per_exit": [len(s) for s in p.samples]}}
