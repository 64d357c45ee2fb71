"""When the timing attack should not trust its own exit estimate, and what it does instead.

``exit_steal`` fits a strategy to its estimated exits. On some channels that estimate
carries nothing: too few admitted queries to fit anything, latencies padded to one or
two values, an estimator that fails, or an estimate that puts every query on one exit
when more are known to exist. Fitting a strategy to such labels can do worse than not
trying. :func:`unreliable_reasons` names each of these conditions (ties count only when
the latencies take fewer values than there are exits: bucket padding to as many levels
as exits still separates them, and the attack reads it); the attack then says
so in its diagnostics (``estimate_unreliable``) and falls back to the rule the
timing-blind baselines use on the same queries: every exit distilled on every admitted
row, and one global threshold chosen on those rows (:mod:`attacks.global_threshold`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MIN_INPUTS = 10
"""Fewer admitted inputs than this cannot separate exits reliably (a few per exit)."""
FALLBACK_MAX_DROP = 0.01
"""The global threshold's allowed fidelity drop (the baselines' default)."""


def unreliable_reasons(latency_s: np.ndarray, estimated: np.ndarray | None,
                       num_exits_known: int | None, failure: str | None = None, *,
                       ties_matter: bool = True) -> list[str]:
    """Why the estimate should not be trusted ([] when nothing speaks against it);
    ``ties_matter=False`` for an estimate that knows what each latency value means."""
    lat = np.asarray(latency_s, dtype=np.float64)
    lat = lat[np.isfinite(lat)]
    reasons: list[str] = []
    if failure:
        reasons.append(f"the exit estimator failed ({failure})")
    if len(lat) < MIN_INPUTS:
        reasons.append(f"only {len(lat)} admitted queries (at least {MIN_INPUTS} needed)")
    distinct = len(np.unique(lat))
    if len(lat) and distinct == 1:
        reasons.append("every admitted latency is the same value (a padded channel)")
    elif ties_matter and len(lat) and num_exits_known is not None and distinct < num_exits_known:
        reasons.append(f"the admitted latencies take {distinct} values for {num_exits_known} "
                       "exits (tied: a padded channel cannot separate them all)")
    if (estimated is not None and num_exits_known is not None and num_exits_known > 1
            and len(estimated) and len(np.unique(estimated)) < 2):
        reasons.append(f"the estimate put every query on exit {int(np.asarray(estimated)[0])} "
                       f"of {num_exits_known}")
    return reasons


def describe(reasons: Sequence[str]) -> dict[str, object]:
    """The diagnostics of a fallback."""
    return {"estimate_unreliable": list(reasons), "fallback": "global_threshold",
            "fallback_max_drop": FALLBACK_MAX_DROP}
