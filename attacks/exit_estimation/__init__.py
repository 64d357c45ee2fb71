"""Exit estimation: latencies in, an estimated exit per query out.

Built-in estimators (registered names): ``bayes`` (exact Normal-Gamma segmentation),
``bocpd`` (online run-length recursion), ``ruptures`` (Dynp), ``ruptures_pelt``,
``ruptures_binseg``, ``ruptures_kernel`` (KernelCPD), ``kde`` (density valleys) and the
reference ``true_exits``. :func:`harness.metrics.leakage.bayes_exit_accuracy` is the ceiling
each is compared with; :func:`synthetic_latencies` draws traces with known exits.
"""

from __future__ import annotations

from attacks.exit_estimation.base import LatencyEstimator, PreparedLatencies, prepare_latencies
from attacks.exit_estimation.bayes import BayesEstimator, BayesFit, bayes_segmentation
from attacks.exit_estimation.bocpd import BocpdEstimator
from attacks.exit_estimation.kde import KdeEstimator, isj_bandwidth
from attacks.exit_estimation.ruptures_estimators import (
    RupturesBinsegEstimator,
    RupturesEstimator,
    RupturesKernelEstimator,
    RupturesPeltEstimator,
)
from attacks.exit_estimation.synthetic import staircase_exits, synthetic_latencies
from attacks.exit_estimation.true_exits import TrueExitsEstimator
from harness.protocol import ExitEstimator

BUILTIN_ESTIMATORS: tuple[type[ExitEstimator], ...] = (
    BayesEstimator,
    BocpdEstimator,
    RupturesEstimator,
    RupturesPeltEstimator,
    RupturesBinsegEstimator,
    RupturesKernelEstimator,
    KdeEstimator,
    TrueExitsEstimator,
)

__all__ = [
    "BUILTIN_ESTIMATORS",
    "BayesEstimator",
    "BayesFit",
    "BocpdEstimator",
    "KdeEstimator",
    "LatencyEstimator",
    "PreparedLatencies",
    "RupturesBinsegEstimator",
    "RupturesEstimator",
    "RupturesKernelEstimator",
    "RupturesPeltEstimator",
    "TrueExitsEstimator",
    "bayes_segmentation",
    "isj_bandwidth",
    "prepare_latencies",
    "staircase_exits",
    "synthetic_latencies",
]
