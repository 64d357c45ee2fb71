"""The server side of a cell: served victim + defense stages + timing -> responses.

Stages run in the order of :mod:`harness.stages`: ``admit`` -> the victim's strategy,
stage by stage -> ``choose_exits`` -> the answering exits -> ``perturb_outputs`` ->
``shape_latency``. Each stage gets one read-only :class:`~harness.stages.StageBatch`.
Exits are computed on demand (:mod:`harness.serving.exits`): a query computes only up
to the exit that answers it, or deeper where ``choose_exits`` asked, and is charged the
deepest exit it computed, in latency (measured per query under ``live``; that exit's
modelled latency otherwise) and in compute cost. Under a modelled timing the batch is
held to an exit-independent allowance (:mod:`harness.serving.allowance`), so the real
computation adds no second timing channel.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np

from harness.errors import ComponentFailure
from harness.protocol import ServedModel
from harness.serving.allowance import ComputeAllowance
from harness.serving.exits import ExitView
from harness.stages import Defense, ServerInfo, StageBatch, defense_report, read_only
from harness.strategy import OutputStrategy
from harness.timing.models import TimingModel

SIMPLEX_ATOL = 1e-6
"""How far a returned probability row may sum from 1 (and dip below 0)."""


@dataclass(frozen=True)
class EndpointResponse:
    """Everything the server knows about a batch; the oracle reveals only part of it.

    ``exits`` is the exit that answered each query and ``depth`` the deepest exit it
    computed (deeper when a defense asked for another exit's outputs); both are -1 for a
    refused query. ``cost_fraction`` is the compute charged: that of ``depth``.
    """

    probs: np.ndarray
    exits: np.ndarray
    cost_fraction: np.ndarray
    latency_s: np.ndarray
    admitted: np.ndarray
    depth: np.ndarray


RESPONSE_FIELDS = ("probs", "exits", "cost_fraction", "latency_s", "admitted", "depth")


def random_client_id(rng: np.random.Generator) -> str:
    """A client id as every client of a cell's server has one (benign, attacker, and an
    attacker's own server's), so a defense cannot tell them apart by their ids."""
    return "client-" + "".join(f"{b:02x}" for b in rng.integers(0, 256, size=4))


SPIN_S = 300e-6
"""The last stretch of a hold is spun, not slept: sleeps overshoot by ~50-100 us."""


def hold_until(deadline: float) -> None:
    """Wait until ``perf_counter() >= deadline``: sleep, then spin the last stretch."""
    left = deadline - time.perf_counter()
    if left > SPIN_S:
        time.sleep(left - SPIN_S)
    while time.perf_counter() < deadline:
        pass


class Endpoint:
    """Answers batches of queries from one client.

    A defense stage that raises, or returns something malformed, is the defense's
    failure: the endpoint raises a :class:`ComponentFailure` naming it and remembers it
    in :attr:`failure`, so the cell records the defense as failed even if the attack
    caught the error.
    """

    def __init__(self, served: ServedModel, strategy: OutputStrategy, defense: Defense,
                 timing: TimingModel, defense_rng: np.random.Generator,
                 timing_rng: np.random.Generator, *, server: ServerInfo,
                 client_id: str = "client", defense_label: str = "defense",
                 defense_component: str | None = None) -> None:
        self.served = served
        self.strategy = strategy
        self.defense = defense
        self.timing = timing
        self.defense_rng = defense_rng
        self.timing_rng = timing_rng
        self.server = server
        self.client_id = client_id
        self.defense_label = defense_label
        self.defense_component = defense_component
        self.failure: ComponentFailure | None = None
        self._chooses_exits = "choose_exits" in defense.stages()
        self._allowance = ComputeAllowance(served)

    def _fail(self, stage: str, detail: str) -> ComponentFailure:
        self.failure = ComponentFailure(f"{self.defense_label}: stage {stage!r} {detail}",
                                        self.defense_component)
        return self.failure

    def _stage(self, stage: str, batch: StageBatch, dtype: type) -> np.ndarray:
        """Run one defense stage; its exception or unconvertible answer is its failure."""
        try:
            return np.array(getattr(self.defense, stage)(batch), dtype=dtype)
        except Exception as exc:
            raise self._fail(stage, f"raised {type(exc).__name__}: {exc}") from exc

    def _check_exits(self, chosen: np.ndarray, raw: np.ndarray, m: int) -> np.ndarray:
        k = self.served.num_exits
        if (chosen.shape != (m,) or not np.array_equal(chosen, np.round(raw))
                or chosen.min() < 0 or chosen.max() >= k):
            raise self._fail("choose_exits", f"must return {m} integer exits in 0..{k - 1}, got "
                             f"shape {raw.shape} with values {np.unique(raw)[:8].tolist()}")
        return chosen

    def _check_outputs(self, out: np.ndarray, m: int) -> np.ndarray:
        c = self.server.num_classes
        if out.shape != (m, c) or not np.isfinite(out).all():
            raise self._fail("perturb_outputs", f"must return finite probabilities of shape "
                             f"({m}, {c}), got shape {out.shape}")
        if m and (out.min() < -SIMPLEX_ATOL or np.abs(out.sum(axis=1) - 1).max() > SIMPLEX_ATOL):
            raise self._fail("perturb_outputs", "must return rows on the probability simplex "
                             f"(>= 0, summing to 1 within {SIMPLEX_ATOL:g}); got row sums in "
                             f"[{out.sum(axis=1).min():.6g}, {out.sum(axis=1).max():.6g}] and "
                             f"minimum {out.min():.3g}")
        return np.clip(out, 0.0, None)

    def _check_latency(self, shaped: np.ndarray, raw: np.ndarray) -> np.ndarray:
        if (shaped.shape != raw.shape or not np.isfinite(shaped).all()
                or np.any(shaped < raw * (1 - 1e-9))):
            raise self._fail("shape_latency", "must return one finite latency per query, "
                             "never shorter than the computation it follows")
        return shaped

    def report(self) -> dict[str, float]:
        """The defense's counters (:meth:`~harness.stages.Defense.report`), checked."""
        try:
            counters = defense_report(self.defense)
            out = {str(k): float(v) for k, v in dict(counters).items()
                   if not isinstance(v, bool)}
        except Exception as exc:
            raise self._fail("report", f"raised {type(exc).__name__}: {exc}") from exc
        if len(out) != len(counters) or not all(math.isfinite(v) for v in out.values()):
            raise self._fail("report", f"must return {{str: finite number}}, got {counters!r}")
        return out

    def respond(self, x: np.ndarray, *, client_id: str | None = None,
                timing_rng: np.random.Generator | None = None) -> EndpointResponse:
        """Answer one batch of one client (``client_id`` and the timing stream may be given
        per batch, so several clients can share this endpoint's defense).

        When the timing measures (``live``), each query's latency is its own measured
        computation plus an even share of the defense's stage time (``shape_latency`` sees
        it), and the response is really held back until the longest shaped latency has
        passed since the batch arrived, so a client timing its round trip waits what a
        defense asks.
        """
        start = time.perf_counter()
        n = len(x)
        client_id = self.client_id if client_id is None else client_id
        timing_rng = self.timing_rng if timing_rng is None else timing_rng
        batch = StageBatch(inputs=read_only(x), client_id=client_id, rng=self.defense_rng,
                           server=self.server)
        admitted = self._stage("admit", batch, bool)
        if admitted.shape != (n,):
            raise self._fail("admit", f"returned shape {admitted.shape}, expected ({n},)")
        stage_s = time.perf_counter() - start
        probs = np.full((n, self.server.num_classes), np.nan)
        exits = np.full(n, -1, dtype=np.int64)
        depth = np.full(n, -1, dtype=np.int64)
        latency = np.full(n, np.nan)
        idx = np.flatnonzero(admitted)
        if len(idx):
            answer = self._answer(x[idx], client_id, timing_rng)
            stage_s += answer.stage_s
            probs[idx], exits[idx], depth[idx], raw_latency = (
                answer.outputs, answer.exits, answer.depth, answer.latency_s)
            batch = StageBatch(inputs=read_only(x[idx]), client_id=client_id,
                               rng=self.defense_rng, server=self.server,
                               policy_exits=answer.policy_exits, exits=read_only(answer.exits),
                               outputs=read_only(answer.outputs),
                               latency_s=read_only(raw_latency))
            t0 = time.perf_counter()
            out = self._check_outputs(self._stage("perturb_outputs", batch, np.float64), len(idx))
            stage_s += time.perf_counter() - t0
            if self.timing.measures:  # the defense's compute is part of what clients wait
                raw_latency = raw_latency + stage_s / n
            batch = replace(batch, outputs=read_only(out), latency_s=read_only(raw_latency))
            t0 = time.perf_counter()
            shaped = self._check_latency(self._stage("shape_latency", batch, np.float64),
                                         raw_latency)
            if self.timing.measures:
                shaped = shaped + (time.perf_counter() - t0) / n
            probs[idx], latency[idx] = out, shaped
        if self.timing.measures and len(idx):
            hold_until(start + float(latency[idx].max()))
        frac = np.asarray(self.served.cost_fraction)
        cost = np.where(depth >= 0, frac[np.clip(depth, 0, len(frac) - 1)], 0.0)
        return EndpointResponse(probs, exits, cost, latency, admitted, depth)

    def _answer(self, xa: np.ndarray, client_id: str,
                timing_rng: np.random.Generator) -> _Answer:
        """The admitted queries computed as a deployed server computes them: the policy
        stage by stage, ``choose_exits`` asking what it needs, the answering exits; each
        query charged the deepest exit it computed."""
        m = len(xa)
        repeats = int(getattr(self.timing, "repeats", 1))
        computing = time.perf_counter()
        view = ExitView(self.served.compute_exits(xa, timed=self.timing.measures,
                                                  repeats=repeats), self.strategy)
        stage_s = 0.0
        policy = None
        if not self._chooses_exits:
            chosen = view.policy_exits()
            policy = chosen
        else:
            if self.defense.wants_policy_exits():
                policy = view.policy_exits()
            batch = StageBatch(inputs=read_only(xa), client_id=client_id,
                               rng=self.defense_rng, server=self.server,
                               policy_exits=read_only(policy), exits=read_only(policy),
                               per_exit_probs=view.sequence(), exit_view=view)
            t0 = time.perf_counter()
            raw = self._stage("choose_exits", batch, np.float64)
            chosen = self._check_exits(raw.astype(np.int64), raw, m)
            stage_s += time.perf_counter() - t0
        outputs = view.answer(chosen)
        depth = view.depth.copy()
        if view.computation.lazy and not self.timing.measures:  # no second channel
            hold_until(computing + self._allowance.seconds(xa))
        if not self.timing.measures:
            latency = self.timing.latencies(depth, self.served.cost_fraction, timing_rng)
        elif view.computation.seconds is not None:
            latency = view.computation.seconds.copy()
        else:  # a backend without stages: time each query alone, to the depth it reached
            latency = self.served.serve(xa, exits=depth, repeats=repeats).latency_s
        return _Answer(outputs, chosen, depth, latency,
                       None if policy is None else read_only(policy), stage_s)


@dataclass(frozen=True)
class _Answer:
    """What the server computed for the admitted queries of one batch."""

    outputs: np.ndarray
    exits: np.ndarray
    depth: np.ndarray
    latency_s: np.ndarray
    policy_exits: np.ndarray | None
    stage_s: float
