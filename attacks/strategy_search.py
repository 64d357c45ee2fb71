"""Output strategy search: thresholds that make a substitute reproduce estimated exits.

Given the substitute's per-exit probabilities on the queried inputs, the estimated
victim exit ``e_i`` of each query and the victim's label ``y_i``, choose one threshold per
non-final exit (for a known :class:`~harness.strategy.ExitPolicy`) maximising the
*exit agreement* ``A = #{i : exit_i(tau) == e_i}``. Scores are mapped to a confidence
``c = policy.confidence(policy.score(p))`` (larger = more confident), so a threshold
at exit ``k`` fires for a confident prefix of the samples sorted by descending ``c``.

1. **Greedy, exit by exit.** For exit ``k`` let ``R_k`` be the samples no earlier exit
   took. Firing the ``m`` most confident of them scores
   ``#{fired, e == k} + #{not fired, e > k}`` - the agreement still reachable on
   ``R_k`` (samples with ``e < k`` are lost whatever ``tau_k`` is).
2. **Coordinate ascent** on the full objective: for exit ``k`` with the other thresholds
   fixed, every sample of ``R_k`` that does not fire lands at its downstream exit
   ``d_i`` (first later exit that fires, else the last), so
   ``A(m) = const + #{fired, e == k} + #{not fired, e == d}``; sweep the exits until no
   threshold changes (at most ``max_sweeps``).

Both steps evaluate every prefix size ``m`` at once with cumulative sums (only cuts
between distinct scores), so one exit costs ``O(n log n)``. Ties on the agreement are
broken by label agreement with the victim (fired samples use exit ``k``'s prediction,
the others their downstream exit's, in step 2), then by the *larger* threshold in
the confident direction (fewer early exits: the conservative choice). A prefix of
size ``m`` becomes the threshold midway between the ``m``-th and ``(m+1)``-th score,
clipped to ``policy.threshold_range``; ``m = 0`` is the strict end of the range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.nn.thresholds import distinct_cuts, threshold_for_prefix
from harness.strategy import ExitPolicy, OutputStrategy


@dataclass(frozen=True)
class SearchResult:
    """The stolen strategy and its agreement with the estimated exits on the search data."""

    strategy: OutputStrategy
    agreement: float
    greedy_agreement: float
    sweeps: int


def _best_prefix(conf: np.ndarray, fire_ok: np.ndarray, stay_ok: np.ndarray,
                 fire_lab: np.ndarray, stay_lab: np.ndarray,
                 zero_ok: bool) -> tuple[np.ndarray, int]:
    """Order (descending confidence) and best prefix size by (agreement, labels, -m).

    ``zero_ok`` False: the strict end of the range still fires (scores at the bound),
    so the empty prefix is not realisable.
    """
    order = np.argsort(-conf, kind="stable")
    c = conf[order]

    def prefix_score(fire: np.ndarray, stay: np.ndarray) -> np.ndarray:
        f = np.concatenate([[0], np.cumsum(fire[order])])
        s = np.concatenate([[0], np.cumsum(stay[order])])
        return f + (s[-1] - s)

    agree = prefix_score(fire_ok, stay_ok)
    labels = prefix_score(fire_lab, stay_lab)
    n = len(c)
    m = np.arange(n + 1)
    valid = np.ones(n + 1, dtype=bool)
    valid[1:] = distinct_cuts(c)  # never split tied scores (m = n is always a cut)
    valid[0] = zero_ok or n == 0
    key_a = np.where(valid, agree, -1)
    best_a = key_a.max()
    cand = m[key_a == best_a]
    best_l = labels[cand].max()
    cand = cand[labels[cand] == best_l]
    return order, int(cand.min())


def _downstream(fired: np.ndarray, k: int) -> np.ndarray:
    """Exit each sample takes after exit ``k`` (first later exit that fires)."""
    later = fired[k + 1:]
    first = np.argmax(later, axis=0)
    return k + 1 + np.where(later.any(axis=0), first, later.shape[0] - 1)


class _Problem:
    """Scores, fire masks and label matches of one search problem (vectorised)."""

    def __init__(self, per_exit_probs: Sequence[np.ndarray], estimated: np.ndarray,
                 victim_labels: np.ndarray, policy: ExitPolicy) -> None:
        self.policy = policy
        self.num_exits = len(per_exit_probs)
        probs = [np.asarray(p, dtype=np.float64) for p in per_exit_probs]
        self.scores = np.stack([policy.score(p) for p in probs])
        self.conf = policy.confidence(self.scores)
        self.match = np.stack([p.argmax(axis=1) == victim_labels for p in probs])
        self.est = np.asarray(estimated, dtype=np.int64)
        self.lo, self.hi = policy.threshold_range(probs[0].shape[1])

    def fired(self, thresholds: Sequence[float]) -> np.ndarray:
        """(K, n) mask of exits whose policy fires (the last always fires)."""
        out = np.ones(self.scores.shape, dtype=bool)
        for k, tau in enumerate(thresholds):
            out[k] = self.policy.fires(self.scores[k], tau)
        return out

    def exits(self, thresholds: Sequence[float]) -> np.ndarray:
        return np.argmax(self.fired(thresholds), axis=0)

    def reach(self, fired: np.ndarray, k: int) -> np.ndarray:
        return ~fired[:k].any(axis=0)

    def choose(self, idx: np.ndarray, k: int, stay_ok: np.ndarray,
               stay_lab: np.ndarray) -> float:
        strict = self.hi if self.policy.higher_is_confident else self.lo
        zero_ok = not self.policy.fires(self.scores[k, idx], strict).any()
        order, m = _best_prefix(self.conf[k, idx], self.est[idx] == k, stay_ok,
                                self.match[k, idx], stay_lab, zero_ok)
        return threshold_for_prefix(self.policy, self.scores[k, idx][order], m, self.lo, self.hi)


def search_strategy(per_exit_probs: Sequence[np.ndarray], estimated_exits: np.ndarray,
                    victim_labels: np.ndarray, policy: ExitPolicy,
                    max_sweeps: int = 10) -> SearchResult:
    """Greedy then coordinate-ascent thresholds (see the module docstring)."""
    prob = _Problem(per_exit_probs, estimated_exits, np.asarray(victim_labels), policy)
    num_exits = prob.num_exits
    n = len(prob.est)
    if n == 0:
        raise ValueError("strategy search needs at least one sample")
    thresholds: list[float] = []
    undecided = np.ones(n, dtype=bool)
    for k in range(num_exits - 1):
        idx = np.flatnonzero(undecided)
        est = prob.est[idx]
        tau = prob.choose(idx, k, est > k, np.zeros(len(idx), dtype=bool))
        thresholds.append(tau)
        undecided[idx] &= ~policy.fires(prob.scores[k, idx], tau)
    greedy = float(np.mean(prob.exits(thresholds) == prob.est))
    sweeps = 0
    for sweep in range(1, max_sweeps + 1):
        sweeps = sweep
        changed = False
        for k in range(num_exits - 1):
            fired = prob.fired(thresholds)
            idx = np.flatnonzero(prob.reach(fired, k))
            down = _downstream(fired[:, idx], k)
            stay_ok = prob.est[idx] == down
            stay_lab = prob.match[down, idx]
            tau = prob.choose(idx, k, stay_ok, stay_lab)
            if tau != thresholds[k]:
                before = np.mean(prob.exits(thresholds) == prob.est)
                trial = [*thresholds[:k], tau, *thresholds[k + 1:]]
                if np.mean(prob.exits(trial) == prob.est) >= before:
                    changed = changed or bool(
                        np.any(prob.exits(trial) != prob.exits(thresholds)))
                    thresholds = trial
        if not changed:
            break
    strategy = OutputStrategy(policy, tuple(thresholds))
    agreement = float(np.mean(prob.exits(thresholds) == prob.est))
    return SearchResult(strategy, agreement, greedy, sweeps)
