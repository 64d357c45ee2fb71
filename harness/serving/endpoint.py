"""The server side of a cell: served victim + defense stages + timing -> responses.

Stages run in the order of DESIGN section 4: ``admit`` -> exits by the victim's
strategy -> ``choose_exits`` -> ``perturb_outputs`` -> latency (modelled, or measured
by really serving each sample in ``timing=live``) -> ``shape_latency``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import ComponentFailure
from harness.protocol import Defense, ServedModel
from harness.strategy import OutputStrategy, answering_probs
from harness.timing.models import TimingModel


@dataclass(frozen=True)
class EndpointResponse:
    """Everything the server knows about a batch; the oracle reveals only part of it."""

    probs: np.ndarray
    exits: np.ndarray
    policy_exits: np.ndarray
    cost_fraction: np.ndarray
    latency_s: np.ndarray
    admitted: np.ndarray


class Endpoint:
    """Answers batches of queries; ``timing=None`` means live measured serving.

    A defense stage that raises, or returns something malformed, is the defense's
    failure: the endpoint raises a :class:`ComponentFailure` naming it and remembers it
    in :attr:`failure`, so the cell records the defense as failed even if the attack
    caught the error.
    """

    def __init__(self, served: ServedModel, strategy: OutputStrategy, defense: Defense,
                 timing: TimingModel | None, defense_rng: np.random.Generator,
                 timing_rng: np.random.Generator, *, num_classes: int,
                 defense_label: str = "defense", repeats: int = 1,
                 defense_component: str | None = None) -> None:
        self.served = served
        self.num_classes = num_classes
        self.strategy = strategy
        self.defense = defense
        self.timing = timing
        self.defense_rng = defense_rng
        self.timing_rng = timing_rng
        self.defense_label = defense_label
        self.repeats = repeats
        self.defense_component = defense_component
        self.failure: ComponentFailure | None = None
        self._chooses_exits = "choose_exits" in defense.stages()

    def _fail(self, stage: str, detail: str) -> ComponentFailure:
        self.failure = ComponentFailure(f"{self.defense_label}: stage {stage!r} {detail}",
                                        self.defense_component)
        return self.failure

    def _stage(self, stage: str, dtype: type, *args: object) -> np.ndarray:
        """Run one defense stage; its exception or unconvertible answer is its failure."""
        try:
            return np.asarray(getattr(self.defense, stage)(*args), dtype=dtype)
        except Exception as exc:
            raise self._fail(stage, f"raised {type(exc).__name__}: {exc}") from exc

    def respond(self, x: np.ndarray) -> EndpointResponse:
        n = len(x)
        k = self.served.num_exits
        admitted = self._stage("admit", bool, x, self.defense_rng)
        if admitted.shape != (n,):
            raise self._fail("admit", f"returned shape {admitted.shape}, expected ({n},)")
        probs = np.full((n, self.num_classes), np.nan)
        exits = np.full(n, -1, dtype=np.int64)
        policy_exits = np.full(n, -1, dtype=np.int64)
        latency = np.full(n, np.nan)
        idx = np.flatnonzero(admitted)
        if len(idx):
            xa = x[idx]
            per_exit = self.served.exit_probs(xa)
            chosen_policy = self.strategy.exits(per_exit)
            chosen = self._stage("choose_exits", np.int64, per_exit, chosen_policy.copy(),
                                 self.strategy, self.defense_rng)
            if chosen.shape != (len(idx),) or chosen.min() < 0 or chosen.max() >= k:
                raise self._fail("choose_exits", f"returned invalid exits (shape {chosen.shape}, "
                                 f"values must be in 0..{k - 1})")
            chosen = chosen.astype(np.int64)
            out = answering_probs(per_exit, chosen)
            if self.timing is None:
                trace = (self.served.serve(xa, exits=chosen, repeats=self.repeats)
                         if self._chooses_exits
                         else self.served.serve(xa, strategy=self.strategy, repeats=self.repeats))
                chosen, out, raw_latency = trace.exits, trace.probs, trace.latency_s
            else:
                raw_latency = self.timing.latencies(chosen, self.served.cost_fraction,
                                                    self.timing_rng)
            out = self._stage("perturb_outputs", np.float64, out, self.defense_rng)
            if out.shape != (len(idx), self.num_classes) or not np.isfinite(out).all():
                raise self._fail("perturb_outputs", "must return finite probabilities of shape "
                                 f"({len(idx)}, {self.num_classes}), got {out.shape}")
            shaped = self._stage("shape_latency", np.float64, raw_latency.copy(), chosen,
                                 self.defense_rng)
            if (shaped.shape != raw_latency.shape or not np.isfinite(shaped).all()
                    or np.any(shaped < raw_latency * (1 - 1e-9))):
                raise self._fail("shape_latency", "must return one finite latency per query, "
                                 "never shorter than the computation it follows")
            probs[idx], exits[idx], policy_exits[idx], latency[idx] = out, chosen, chosen_policy, shaped
        frac = np.asarray(self.served.cost_fraction)
        cost = np.where(exits >= 0, frac[np.clip(exits, 0, k - 1)], 0.0)
        return EndpointResponse(probs, exits, policy_exits, cost, latency, admitted)
