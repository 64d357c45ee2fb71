"""Do the unsupervised exit estimators agree? A check the timing attack runs on its own queries.

No single latency-only estimator is best on every channel (the live-corpus benchmark,
``benchmarks/estimation_corpus.py``): changepoints on sorted latencies, density valleys
and online changepoints fail on different exit mixes. Where they give different exits
for the same latencies, at least one of them is wrong, and the attacker can see that
without knowing the true exits. :func:`compare_variants` runs the built-in variants on
the attack's combined latencies and reports, per variant, the share of inputs on which
it gives the same exit as the attack's own estimate. A variant that disagrees on more
than :data:`DISAGREEMENT` of the inputs is named in ``estimator_disagreement``;
``benchmarks/attack_victims.py`` and ``benchmarks/capacity_slack.py`` report it per cell.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.protocol import ExitEstimator

VARIANTS: tuple[str, ...] = ("bayes", "kde", "bocpd", "ruptures")
"""The unsupervised built-in estimators compared (the exit_steal variants' defaults)."""
DISAGREEMENT = 0.1
"""A variant whose exits differ on more than this share of inputs disagrees."""


def compare_variants(estimate: Callable[[ExitEstimator], np.ndarray],
                     make: Callable[[str], ExitEstimator], main_exits: np.ndarray,
                     main_name: str, variants: Sequence[str] = VARIANTS) -> dict[str, Any]:
    """Agreement of each variant (other than ``main_name``) with ``main_exits``.

    ``make(name)`` builds a variant and ``estimate(estimator)`` runs it on the attack's
    latencies (with whatever the threat model grants); a variant that fails is reported
    with its error instead of an agreement, and never stops the attack.
    """
    main_exits = np.asarray(main_exits, dtype=np.int64)
    agreement: dict[str, float] = {}
    failed: dict[str, str] = {}
    for name in variants:
        if name == main_name:
            continue
        try:
            exits = np.asarray(estimate(make(name)), dtype=np.int64)
        except HarnessError:
            raise
        except Exception as exc:  # a variant's fit failed: say so, keep the attack going
            failed[name] = f"{type(exc).__name__}: {exc}"[:200]
            continue
        agreement[name] = float(np.mean(exits == main_exits)) if len(main_exits) else 1.0
    notes: dict[str, Any] = {
        "estimator_variants": agreement,
        "estimator_disagreement": sorted(n for n, a in agreement.items()
                                         if 1.0 - a > DISAGREEMENT),
    }
    if failed:
        notes["estimator_variants_failed"] = failed
    return notes
