"""Per-exit threshold selection on the validation split (a victim's output strategy).

Rule (greedy, exit by exit, cheapest first). Among the validation samples that reach
non-final exit ``k`` (no earlier exit fired), order them from most to least confident
under the policy (:meth:`ExitPolicy.confidence` of :meth:`ExitPolicy.score`) and let exit
``k`` answer the largest confident prefix ``S`` such that

1. *accuracy*: exit ``k``'s accuracy on ``S`` is at least the final exit's accuracy on
   ``S`` minus ``max_accuracy_drop``, and
2. *share cap*: ``|S|`` is at most ``max_exit_share`` of the samples reaching exit ``k``
   (so deeper exits keep traffic even on easy data, and costs stay informative).

Tied scores are never split. The threshold is the midpoint between the least confident
score in ``S`` and the next score (or the end of the policy's range), so it generalises
to unseen inputs. When ``S`` is empty the threshold is the strict end of the range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.nn.thresholds import distinct_cuts, threshold_for_prefix
from harness.strategy import ExitPolicy, OutputStrategy


def _prefix_size(conf: np.ndarray, correct_k: np.ndarray, correct_final: np.ndarray,
                 max_accuracy_drop: float, max_take: float) -> int:
    """Largest feasible prefix size of the samples sorted by descending ``conf``."""
    n = len(conf)
    if n == 0:
        return 0
    m = np.arange(1, n + 1)
    ok = np.cumsum(correct_k) >= np.cumsum(correct_final) - max_accuracy_drop * m - 1e-9
    ok &= m <= max_take + 1e-9
    ok &= distinct_cuts(conf)  # only cut between distinct scores
    feasible = np.flatnonzero(ok)
    return int(feasible[-1] + 1) if len(feasible) else 0


def select_thresholds(per_exit_probs: Sequence[np.ndarray], labels: np.ndarray,
                         policy: ExitPolicy, *, max_accuracy_drop: float = 0.01,
                         max_exit_share: float = 0.5) -> tuple[float, ...]:
    """One threshold per non-final exit, chosen by the rule in the module docstring."""
    if not 0.0 <= max_accuracy_drop <= 1.0 or not 0.0 <= max_exit_share <= 1.0:
        raise ValueError("max_accuracy_drop and max_exit_share must lie in [0, 1]")
    labels = np.asarray(labels)
    num_exits = len(per_exit_probs)
    num_classes = np.asarray(per_exit_probs[0]).shape[1]
    lo, hi = policy.threshold_range(num_classes)
    correct_final = np.asarray(per_exit_probs[-1]).argmax(axis=1) == labels
    undecided = np.ones(len(labels), dtype=bool)
    thresholds = []
    for k in range(num_exits - 1):
        probs = np.asarray(per_exit_probs[k])
        reach = np.flatnonzero(undecided)
        scores = policy.score(probs[reach])
        order = np.argsort(-policy.confidence(scores), kind="stable")
        sorted_scores = scores[order]
        correct_k = (probs[reach].argmax(axis=1) == labels[reach])[order]
        m = _prefix_size(policy.confidence(sorted_scores), correct_k,
                         correct_final[reach][order], max_accuracy_drop,
                         max_exit_share * len(reach))
        tau = threshold_for_prefix(policy, sorted_scores, m, lo, hi)
        thresholds.append(tau)
        undecided[reach] &= ~policy.fires(scores, tau)
    return tuple(thresholds)


@dataclass(frozen=True)
class ExitReport:
    """How a strategy routes a labelled set: share and accuracy of each exit.

    ``exit_accuracy[k]`` is the accuracy of the samples answered by exit ``k`` (NaN if
    none); ``head_accuracy[k]`` is exit ``k``'s accuracy on all samples.
    """

    shares: tuple[float, ...]
    exit_accuracy: tuple[float, ...]
    head_accuracy: tuple[float, ...]
    accuracy: float

    def summary(self) -> str:
        def fmt(values: tuple[float, ...]) -> str:
            return " ".join(f"{v:.3f}" for v in values)

        return (f"shares [{fmt(self.shares)}] exit-acc [{fmt(self.exit_accuracy)}] "
                f"head-acc [{fmt(self.head_accuracy)}] overall {self.accuracy:.3f}")


def exit_report(strategy: OutputStrategy, per_exit_probs: Sequence[np.ndarray],
                labels: np.ndarray) -> ExitReport:
    """Route ``per_exit_probs`` with ``strategy`` and summarise per exit."""
    labels = np.asarray(labels)
    exits = strategy.exits(per_exit_probs)
    preds = [np.asarray(p).argmax(axis=1) for p in per_exit_probs]
    served = np.choose(exits, preds) if len(labels) else labels
    shares, exit_acc = [], []
    for k in range(len(per_exit_probs)):
        mask = exits == k
        shares.append(float(mask.mean()) if len(labels) else float("nan"))
        exit_acc.append(float((preds[k][mask] == labels[mask]).mean()) if mask.any()
                        else float("nan"))
    head_acc = tuple(float((p == labels).mean()) for p in preds)
    return ExitReport(tuple(shares), tuple(exit_acc), head_acc,
                      float((served == labels).mean()))
