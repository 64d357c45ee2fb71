"""The shared per-sample early-exit serving loop of the built-in backends.

A backend supplies three small operations: turn inputs into their hidden state, run
stage ``k`` (block ``k`` + head ``k``) on a hidden state, and run every exit on a batch.
:class:`StagedServedModel` builds the contract of :class:`harness.protocol.ServedModel`
from them: the batched path (all exits, in chunks), the true early-exit path, in which
each sample is served alone (batch size 1), stage after stage, and computation stops at
the answering exit (each served sample timed with ``perf_counter_ns`` from the arrival
of its input to the probabilities of its answering exit), and
:class:`StagedComputation`, the server's on-demand computation of a batch: each row
advances stage by stage only as deep as asked (batched; or, timed, one row at a time with
every stage call measured).
"""

from __future__ import annotations

import contextlib
import time
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np

from harness.computation import ExitComputation
from harness.errors import ConfigError, InvalidQueryError
from harness.params import Interval, Options
from harness.protocol import ServedModel, ServeTrace
from harness.strategy import OutputStrategy

AGGREGATES = ("min", "median")


def softmax64(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


SERVING_CONSTRAINTS: dict[str, list[Any]] = {
    "warmup": [Interval("int", 0, 100_000)],
    "aggregate": [Options(*AGGREGATES)],
    "batch_size": [Interval("int", 1, 1_000_000)],
}
"""Constraints of the parameters both built-in backends share."""


class StagedServedModel(ServedModel):
    """Per-sample early exit over ``num_exits`` stages; subclasses run one stage."""

    backend: str = ""

    def __init__(self, *, num_exits: int, cost_fraction: tuple[float, ...],
                 input_shape: tuple[int, ...], num_classes: int, device: str,
                 warmup: int, aggregate: str, batch_size: int) -> None:
        self.num_exits = int(num_exits)
        self.cost_fraction = tuple(float(c) for c in cost_fraction)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self.device = device
        self.warmup = warmup
        self.aggregate = aggregate
        self.batch_size = batch_size

    # -- backend operations ------------------------------------------------------------
    @abstractmethod
    def _state(self, x1: np.ndarray) -> Any:
        """The backend's hidden state for float32 inputs of shape (n, *input_shape)."""

    @abstractmethod
    def _stage(self, k: int, h: Any) -> tuple[Any, np.ndarray]:
        """Run block ``k`` and head ``k``: (next hidden state, logits (n, C) on the host)."""

    def _split(self, h: Any, n: int) -> list[Any]:
        """A batch's hidden state as ``n`` one-row states."""
        return [h[i:i + 1] for i in range(n)]

    def _join(self, parts: list[Any]) -> Any:
        """One-row hidden states as one batch (numpy states by default)."""
        return np.concatenate(parts)

    @abstractmethod
    def _batch_logits(self, x: np.ndarray) -> list[np.ndarray]:
        """Logits of every exit for one chunk of inputs, K x (n, C) on the host."""

    def _sync(self) -> None:
        """Wait for queued device work (a no-op on cpu)."""

    @contextlib.contextmanager
    def _session(self) -> Iterator[None]:
        """Context in which the backend computes (threads, inference mode)."""
        yield

    # -- ServedModel -------------------------------------------------------------------
    def compute_exits(self, x: np.ndarray, *, timed: bool = False,
                      repeats: int = 1) -> StagedComputation:
        """The exits of ``x`` on demand: each row computed only as deep as asked."""
        return StagedComputation(self, self._check_inputs(x), timed=timed, repeats=repeats)

    def exit_probs(self, x: np.ndarray) -> list[np.ndarray]:
        x = self._check_inputs(x)
        chunks: list[list[np.ndarray]] = []
        with self._session():
            for start in range(0, len(x), self.batch_size):
                chunks.append(self._batch_logits(x[start:start + self.batch_size]))
        if not chunks:
            return [np.zeros((0, self.num_classes)) for _ in range(self.num_exits)]
        return [softmax64(np.concatenate([c[k] for c in chunks])) for k in range(self.num_exits)]

    def serve(self, x: np.ndarray, strategy: OutputStrategy | None = None,
              exits: np.ndarray | None = None, repeats: int = 1) -> ServeTrace:
        """Serve each sample alone, timed; when both ``strategy`` and ``exits`` are given,
        the strategy is still evaluated on the way (as a server does) but ``exits`` decides."""
        x = self._check_inputs(x)
        stops = self._check_stops(x, strategy, exits, repeats)
        n = len(x)
        probs = np.zeros((n, self.num_classes), dtype=np.float64)
        served = np.zeros(n, dtype=np.int64)
        latency = np.zeros(n, dtype=np.float64)
        reduce = np.min if self.aggregate == "min" else np.median
        with self._session():
            for i in range(min(self.warmup, n)):
                self._serve_one(x[i:i + 1], strategy, self.num_exits - 1)
            for i in range(n):
                stop = None if stops is None else int(stops[i])
                times = []
                for _ in range(repeats):
                    ns, k, p = self._serve_one(x[i:i + 1], strategy, stop)
                    times.append(ns)
                probs[i], served[i] = p[0], k
                latency[i] = float(reduce(np.asarray(times, dtype=np.float64))) * 1e-9
        return ServeTrace(probs=probs, exits=served, latency_s=latency)

    def _serve_one(self, x1: np.ndarray, strategy: OutputStrategy | None,
                   stop: int | None) -> tuple[int, int, np.ndarray]:
        """One timed request: (nanoseconds, answering exit, its probabilities)."""
        last = self.num_exits - 1
        self._sync()
        t0 = time.perf_counter_ns()
        h = self._state(x1)
        for k in range(self.num_exits):
            h, logits = self._stage(k, h)
            p = softmax64(logits)
            fired = strategy is not None and bool(strategy.fires_at(k, p)[0])
            if k == last or (k == stop if stop is not None else fired):
                break
        self._sync()
        t1 = time.perf_counter_ns()
        return t1 - t0, k, p

    # -- validation --------------------------------------------------------------------
    def _check_inputs(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise InvalidQueryError(
                f"{self.backend} serving: inputs have shape {x.shape}; expected "
                f"(n, {', '.join(map(str, self.input_shape))}) for this victim")
        if not np.issubdtype(x.dtype, np.floating):
            raise InvalidQueryError(
                f"{self.backend} serving: inputs have dtype {x.dtype}; give floating-point "
                "inputs (they are served as float32)")
        return np.ascontiguousarray(x, dtype=np.float32)

    def _check_stops(self, x: np.ndarray, strategy: OutputStrategy | None,
                     exits: np.ndarray | None, repeats: int) -> np.ndarray | None:
        if not isinstance(repeats, int | np.integer) or repeats < 1:
            raise ConfigError(f"{self.backend} serving: repeats={repeats!r} must be an "
                              "integer >= 1 (timed runs per sample)")
        if strategy is None and exits is None:
            raise ConfigError(f"{self.backend} serving: give a strategy (the victim's exit "
                              "decision) or exits (a forced exit per sample), or both")
        if strategy is not None and strategy.num_exits != self.num_exits:
            raise ConfigError(
                f"{self.backend} serving: the strategy has {strategy.num_exits} exits but "
                f"the served network has {self.num_exits}; use the victim's own strategy")
        if exits is None:
            return None
        stops = np.asarray(exits)
        if stops.shape != (len(x),) or not np.issubdtype(stops.dtype, np.integer):
            raise ConfigError(
                f"{self.backend} serving: exits must be an integer array of shape "
                f"({len(x)},), one forced exit per input; got dtype {stops.dtype}, "
                f"shape {stops.shape}")
        if len(stops) and (stops.min() < 0 or stops.max() >= self.num_exits):
            raise ConfigError(
                f"{self.backend} serving: forced exits must lie in [0, {self.num_exits - 1}]; "
                f"got values in [{stops.min()}, {stops.max()}]")
        return stops.astype(np.int64)


class StagedComputation(ExitComputation):
    """A batch's rows advanced stage by stage on demand, never past what was asked.

    Untimed, the rows that must reach a stage are computed together; timed (``live``),
    each row alone, every stage call timed with ``perf_counter_ns`` (``repeats`` runs,
    reduced by the backend's ``aggregate``), so ``seconds[i]`` is what serving row ``i``
    alone cost.
    """

    def __init__(self, model: StagedServedModel, x: np.ndarray, *, timed: bool,
                 repeats: int) -> None:
        self.model = model
        self.x = x
        self.num_exits = model.num_exits
        self.depth = np.full(len(x), -1, dtype=np.int64)
        self.seconds = np.zeros(len(x)) if timed else None
        self.repeats = max(1, int(repeats))
        self._states: list[Any] = [None] * len(x)
        self._probs = np.full((model.num_exits, len(x), model.num_classes), np.nan)

    def probs(self, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        self._check(k)
        rows = self._rows(rows, len(self.depth))
        behind = np.unique(rows[self.depth[rows] < k])
        if len(behind):
            with self.model._session():
                if self.seconds is None:
                    self._advance(behind, int(k))
                else:
                    for i in behind:
                        self._advance_alone(int(i), int(k))
        return self._probs[k, rows]

    def _advance(self, rows: np.ndarray, k: int) -> None:
        """Rows up to exit ``k`` together, stage after stage."""
        for j in range(int(self.depth[rows].min()) + 1, k + 1):
            at = rows[self.depth[rows] == j - 1]
            if not len(at):
                continue
            h = (self.model._state(self.x[at]) if j == 0
                 else self.model._join([self._states[i] for i in at]))
            h, logits = self.model._stage(j, h)
            self._keep(at, j, self.model._split(h, len(at)), softmax64(logits))

    def _advance_alone(self, i: int, k: int) -> None:
        """Row ``i`` up to exit ``k`` alone, each stage timed."""
        for j in range(int(self.depth[i]) + 1, k + 1):
            times = []
            for _ in range(self.repeats):
                self.model._sync()
                t0 = time.perf_counter_ns()
                h = self.model._state(self.x[i:i + 1]) if j == 0 else self._states[i]
                h, logits = self.model._stage(j, h)
                probs = softmax64(logits)
                self.model._sync()
                times.append(time.perf_counter_ns() - t0)
            assert self.seconds is not None
            self.seconds[i] += self._reduce(times) * 1e-9
            self._keep(np.array([i]), j, [h], probs)

    def _reduce(self, times: list[int]) -> float:
        """The backend's aggregate of repeated timings (one timing is itself: no numpy)."""
        if len(times) == 1:
            return float(times[0])
        reduce = np.min if self.model.aggregate == "min" else np.median
        return float(reduce(np.asarray(times, dtype=np.float64)))

    def _keep(self, rows: np.ndarray, j: int, states: list[Any], probs: np.ndarray) -> None:
        self._probs[j, rows] = probs
        self.depth[rows] = j
        last = j == self.num_exits - 1
        for pos, i in enumerate(rows):
            self._states[int(i)] = None if last else states[pos]
