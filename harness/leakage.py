"""Attack-agnostic leakage of the served exit through the observed latency.

Both measures work on log latency (scale-free, tames the heavy right tail):

* ``leakage_bits``: mutual information I(exit; latency) in bits, by the k-nearest-
  neighbour estimator for a discrete and a continuous variable (Ross 2014, as in
  scikit-learn's ``mutual_info_classif``). At most log2(#exits).
* ``bayes_exit_accuracy``: two-fold cross-fitted accuracy of a k-nearest-neighbour
  classifier of the exit from the latency (k ~ sqrt(n)), a consistent estimate of the
  Bayes-optimal timing-only exit accuracy that any exit estimator is compared with.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.feature_selection import mutual_info_classif
from sklearn.neighbors import KNeighborsClassifier


def _log_latency(latency_s: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(latency_s, dtype=np.float64), 1e-12))[:, None]


def leakage_bits(latency_s: np.ndarray, exits: np.ndarray, seed: int = 0) -> float:
    """Mutual information (bits) between served exit and log latency."""
    exits = np.asarray(exits)
    if len(exits) < 8 or len(np.unique(exits)) < 2:
        return 0.0
    nats = mutual_info_classif(_log_latency(latency_s), exits, discrete_features=False,
                               n_neighbors=3, random_state=seed)[0]
    return float(max(0.0, nats) / math.log(2))


def bayes_exit_accuracy(latency_s: np.ndarray, exits: np.ndarray, seed: int = 0) -> float:
    """Cross-fitted kNN accuracy of predicting the served exit from the latency."""
    exits = np.asarray(exits)
    n = len(exits)
    if n == 0:
        return 0.0
    if n < 8 or len(np.unique(exits)) < 2:
        return float(np.mean(exits == np.bincount(exits).argmax()))
    x = _log_latency(latency_s)
    folds = np.random.default_rng(seed).permutation(n) % 2
    correct = 0
    for f in (0, 1):
        train, test = folds != f, folds == f
        k = int(np.clip(round(math.sqrt(train.sum()) / 2), 1, train.sum()))
        clf = KNeighborsClassifier(n_neighbors=k).fit(x[train], exits[train])
        correct += int((clf.predict(x[test]) == exits[test]).sum())
    return correct / n
