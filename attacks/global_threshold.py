"""How the baseline attacks set an output strategy without the side channel.

A practitioner who has stolen the function but knows nothing of the victim's exits sets
the strategy the way SDN (Kaya et al., ICML 2019) deployments do: **one global
threshold** of the default policy (``max_prob``), the same at every early exit, chosen
on data so that early exiting costs at most ``max_drop`` accuracy against the network's
final exit. Here the only labelled data the attacker has are its own admitted queries,
labelled by the victim, so "accuracy" is the substitute's *fidelity on its queries*
(agreement with the victim's top-1 there):

1. the substitute's final exit scores ``fid_final`` on the rows;
2. candidate thresholds are the early exits' own scores on the rows (at most
   :data:`MAX_CANDIDATES` quantiles of them) plus the policy's strictest value;
3. the rule takes the **most permissive** candidate (lowest for ``max_prob``, highest
   for ``entropy``: the one that lets most rows exit early) whose fidelity on the rows
   is at least ``fid_final - max_drop``; when none is, the strictest value.

The rows are held-out queries when the attack's trainer held some out (at least
:data:`MIN_HOLDOUT_ROWS`), else every admitted query (the substitute was trained on
those, so the fidelities are optimistic, the usual case at a few hundred queries).

:class:`ThresholdChoice` also records the **final-exit-only** reference (every row
answered by the final exit: fidelity ``fid_final``, cost fraction 1.0), so the
efficiency the global rule trades for fidelity is visible in each attack's diagnostics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.model import MultiExitNet, exit_probabilities
from harness.strategy import ExitPolicy, OutputStrategy

MAX_CANDIDATES = 1024
"""Candidate thresholds tried at most (quantiles of the early exits' scores beyond that)."""

MIN_HOLDOUT_ROWS = 20
"""Held-out queries needed before the rule is applied to them instead of to all queries."""


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen global strategy and what it and the final exit alone score on the rows."""

    strategy: OutputStrategy
    threshold: float
    max_drop: float
    fidelity: float
    final_exit_fidelity: float
    cost_fraction: float
    rows: int
    source: str

    def to_json(self) -> dict[str, Any]:
        """Diagnostics: the rule's result beside the final-exit-only reference (JSON;
        undefined values are None)."""
        return {
            "global_threshold": {
                "policy": self.strategy.policy.name, "threshold": _finite(self.threshold),
                "max_drop": self.max_drop, "fidelity_on_queries": _finite(self.fidelity),
                "cost_fraction_on_queries": _finite(self.cost_fraction), "rows": self.rows,
                "rows_from": self.source},
            "final_exit_only": {"fidelity_on_queries": _finite(self.final_exit_fidelity),
                                "cost_fraction": 1.0},
        }


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def candidate_thresholds(scores: np.ndarray, policy: ExitPolicy,
                         num_classes: int) -> np.ndarray:
    """Candidates from most permissive to strictest; the strictest value comes last."""
    lo, hi = policy.threshold_range(num_classes)
    values = np.unique(np.clip(scores[np.isfinite(scores)], lo, hi))
    if len(values) > MAX_CANDIDATES - 1:
        values = np.unique(np.quantile(values, np.linspace(0, 1, MAX_CANDIDATES - 1)))
    strict = hi if policy.higher_is_confident else lo
    values = np.unique(np.append(values, strict))
    return values if policy.higher_is_confident else values[::-1]


def strategy_outcomes(per_exit_probs: Sequence[np.ndarray], policy: ExitPolicy,
                      thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exit, label) per (threshold, row) when every early exit uses that threshold."""
    probs = np.stack([np.asarray(p, dtype=np.float64) for p in per_exit_probs])
    k, n = probs.shape[0], probs.shape[1]
    labels = probs.argmax(axis=2)  # (K, n)
    scores = np.stack([policy.score(p) for p in probs[:-1]])  # (K-1, n)
    exits = np.full((len(thresholds), n), k - 1, dtype=np.int64)
    undecided = np.ones((len(thresholds), n), dtype=bool)
    for j in range(k - 1):
        fired = policy.fires(scores[j][None, :], thresholds[:, None]) & undecided
        exits[fired] = j
        undecided &= ~fired
    return exits, labels[exits, np.arange(n)[None, :]]


def choose_global_threshold(per_exit_probs: Sequence[np.ndarray], victim_labels: np.ndarray,
                            policy: ExitPolicy, cost_fraction: Sequence[float],
                            num_classes: int, max_drop: float, source: str = "queries",
                            fixed: float | None = None) -> ThresholdChoice:
    """The rule of the module docstring on the substitute's per-exit probabilities
    (``fixed``: use that threshold instead, still scored on the rows)."""
    victim_labels = np.asarray(victim_labels, dtype=np.int64)
    k = len(per_exit_probs)
    final_fid = float((np.asarray(per_exit_probs[-1]).argmax(axis=1) == victim_labels).mean())
    if k == 1:
        return ThresholdChoice(OutputStrategy(policy, ()), float("nan"), max_drop, final_fid,
                               final_fid, 1.0, len(victim_labels), source)
    scores = np.concatenate([policy.score(np.asarray(p)) for p in per_exit_probs[:-1]])
    candidates = (np.array([float(fixed)]) if fixed is not None
                  else candidate_thresholds(scores, policy, num_classes))
    exits, labels = strategy_outcomes(per_exit_probs, policy, candidates)
    fidelity = (labels == victim_labels[None, :]).mean(axis=1)
    ok = np.flatnonzero(fidelity >= final_fid - max_drop - 1e-12)
    pick = int(ok[0]) if len(ok) else len(candidates) - 1
    source = source if fixed is None else f"{source} (fixed threshold)"
    tau = float(candidates[pick])
    cost = float(np.asarray(cost_fraction, dtype=np.float64)[exits[pick]].mean())
    return ThresholdChoice(OutputStrategy(policy, (tau,) * (k - 1)), tau, max_drop,
                           float(fidelity[pick]), final_fid, cost, len(victim_labels), source)


def global_strategy(model: MultiExitNet, x: np.ndarray, victim_labels: np.ndarray,
                    policy: ExitPolicy, num_classes: int, max_drop: float, device: str,
                    holdout_rows: np.ndarray | None = None,
                    fixed: float | None = None) -> ThresholdChoice:
    """Choose the global threshold for ``model`` on the queries ``x`` (labels from the
    victim), on the held-out ones when there are enough of them."""
    source = "queries"
    if holdout_rows is not None and len(holdout_rows) >= MIN_HOLDOUT_ROWS:
        x, victim_labels, source = x[holdout_rows], np.asarray(victim_labels)[holdout_rows], \
            "holdout"
    if len(x) == 0:  # nothing admitted: the strictest strategy (or the fixed one)
        lo, hi = policy.threshold_range(num_classes)
        tau = fixed if fixed is not None else (hi if policy.higher_is_confident else lo)
        return ThresholdChoice(OutputStrategy(policy, (tau,) * (model.num_exits - 1)),
                               tau, max_drop, float("nan"), float("nan"), 1.0, 0, "none")
    probs = exit_probabilities(model, x, device)
    return choose_global_threshold(probs, victim_labels, policy, model.cost_fraction,
                                   num_classes, max_drop, source, fixed)
