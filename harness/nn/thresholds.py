"""Threshold helpers shared by victims' threshold selection and attackers' strategy search.

Both choose, per exit, how many of the samples reaching it should fire: a *prefix*
of the samples sorted from most to least confident. :func:`threshold_for_prefix` turns
a prefix size into a policy threshold that fires for exactly that prefix, midway
between the last score inside and the first outside (so it generalises to unseen
inputs); an empty prefix is the strict end of the policy's range.
:func:`distinct_cuts` marks the prefix sizes that never split tied scores.
"""

from __future__ import annotations

import numpy as np

from harness.strategy import ExitPolicy


def threshold_for_prefix(policy: ExitPolicy, sorted_scores: np.ndarray, m: int,
                         lo: float, hi: float) -> float:
    """Threshold firing for exactly the first ``m`` of the confidence-sorted ``sorted_scores``."""
    strict, loose = (hi, lo) if policy.higher_is_confident else (lo, hi)
    if m == 0:
        return float(strict)
    inner = float(sorted_scores[m - 1])
    outer = float(sorted_scores[m]) if m < len(sorted_scores) else float(loose)
    return float(np.clip(0.5 * (inner + outer), lo, hi))


def distinct_cuts(sorted_confidence: np.ndarray) -> np.ndarray:
    """``ok[m - 1]`` for prefix sizes ``m = 1..n``: True unless it splits tied scores."""
    c = np.asarray(sorted_confidence)
    ok = np.ones(len(c), dtype=bool)
    ok[:-1] = c[1:] < c[:-1]
    return ok
