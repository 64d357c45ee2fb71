"""Attack-agnostic leakage of the served exit through the observed latency.

Both measures work on log latency (scale-free, tames the heavy right tail):

* ``leakage_bits``: mutual information I(exit; latency) in bits, by the k-nearest-
  neighbour estimator for a discrete and a continuous variable (Ross 2014, as in
  scikit-learn's ``mutual_info_classif``). At most log2(#exits).
* ``bayes_exit_accuracy``: the Bayes-optimal timing-only exit accuracy, the ceiling any
  exit estimator is compared with (the project's one estimator of it). For one latency
  per query the best classifier of the exit is ``argmax_k P(k) p(log latency | k)``;
  it is estimated by ``folds``-fold cross-validation (folds from a fixed shuffle,
  :data:`FOLD_SEED`, so no randomness, and a periodic query order - exits ``i % k`` with
  ``k == folds`` - cannot put one exit in each fold): on the training folds, priors are
  exit frequencies and each exit's class-conditional density is a Gaussian KDE
  (Silverman bandwidth of that exit's sample, floored at 1e-3 of the overall spread and
  at 1e-9; a query beyond a density's grid still gets its nearest kernel's density, so
  far tails stay ordered); held-out queries are classified by ``argmax prior *
  density``. The estimate is floored at the majority-exit rate
  (:func:`majority_exit_rate`, chance): the Bayes classifier never does worse than
  always answering the most common exit, while a cross-validated density classifier can
  dip below it on tied latencies (padding) through fold-to-fold prior noise.
  Cross-validation keeps it honest (resubstitution overfits rare exits); it is slightly
  pessimistic for small samples and converges to
  the Bayes accuracy as ``n`` grows. Unlike a k-nearest-neighbour vote it still
  recognises a well-separated exit of a handful of queries (unbalanced exit mixes).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.feature_selection import mutual_info_classif

from harness.errors import ConfigError
from harness.metrics.density import kde_grid, silverman_bandwidth

FOLD_SEED = 0
"""Seed of the fixed shuffle that assigns queries to cross-validation folds."""


def log_latency(latency_s: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(latency_s, dtype=np.float64), 1e-12))


def leakage_bits(latency_s: np.ndarray, exits: np.ndarray, seed: int = 0) -> float:
    """Mutual information (bits) between served exit and log latency."""
    exits = np.asarray(exits)
    if len(exits) < 8 or len(np.unique(exits)) < 2 or len(np.unique(latency_s)) < 2:
        return 0.0  # one exit, or one latency (a pad to a constant): nothing to learn
    nats = mutual_info_classif(log_latency(latency_s)[:, None], exits, discrete_features=False,
                               n_neighbors=3, random_state=seed)[0]
    return float(max(0.0, nats) / math.log(2))


def normal_log_density(train: np.ndarray, points: np.ndarray, floor_h: float) -> np.ndarray:
    """A normal log density fitted to ``train`` (sd floored at ``floor_h``), at ``points``."""
    sd = max(float(np.std(train)), floor_h)
    return -0.5 * ((points - float(np.mean(train))) / sd) ** 2 - math.log(sd * math.sqrt(2 * math.pi))


def log_density(train: np.ndarray, points: np.ndarray, floor_h: float) -> np.ndarray:
    """Gaussian-KDE log density of ``points``: the gridded KDE, never below its nearest kernel.

    The nearest kernel alone is a lower bound of the density; taking it where the grid
    underflows keeps far tails ordered (a query far from every exit goes to the nearest).
    """
    z = np.sort(train)
    h = max(silverman_bandwidth(z), floor_h)
    grid, dens = kde_grid(z, h)
    gridded = np.log(np.interp(points, grid, dens, left=0.0, right=0.0) + 1e-300)
    pos = np.clip(np.searchsorted(z, points), 1, len(z) - 1) if len(z) > 1 else np.zeros(
        len(points), dtype=np.int64)
    gap = np.abs(points - z[pos]) if len(z) == 1 else np.minimum(np.abs(points - z[pos - 1]),
                                                                 np.abs(points - z[pos]))
    nearest = -0.5 * (gap / h) ** 2 - math.log(len(z) * h * math.sqrt(2 * math.pi))
    return np.maximum(gridded, nearest)


def bayes_exit_accuracy(latency_s: np.ndarray, exits: np.ndarray, folds: int = 5) -> float:
    """Cross-validated ``argmax prior * KDE density`` accuracy on log latency (module doc).

    With fewer than ``2 * folds`` queries, or a single exit, it is the majority-exit rate.
    """
    y = log_latency(latency_s)
    exits = np.asarray(exits)
    if exits.shape != y.shape or (len(exits) and not np.issubdtype(exits.dtype, np.integer)):
        raise ConfigError(f"bayes_exit_accuracy: exits must be integers of shape {y.shape}, "
                          f"got {exits.dtype} {exits.shape}")
    if not np.isfinite(y).all():
        raise ConfigError("bayes_exit_accuracy: latencies must be finite (drop refused queries)")
    if not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"bayes_exit_accuracy: folds={folds!r} must be an integer >= 2")
    n = len(y)
    if n == 0:
        return 0.0
    chance = majority_exit_rate(exits)
    if n < 2 * folds or len(np.unique(exits)) < 2 or y.max() == y.min():
        return chance  # too few queries, one exit, or one latency (nothing to separate)
    floor_h = max(1e-3 * float(y.max() - y.min()), 1e-9)
    fold = np.random.default_rng(FOLD_SEED).permutation(n) % folds
    correct = 0
    for f in range(folds):
        train, test = fold != f, fold == f
        labels = np.unique(exits[train])
        scores = np.stack([
            np.log(np.mean(exits[train] == k)) + log_density(y[train & (exits == k)],
                                                              y[test], floor_h)
            for k in labels
        ])
        correct += int(np.sum(labels[np.argmax(scores, axis=0)] == exits[test]))
    return max(correct / n, chance)


def majority_exit_rate(exits: np.ndarray) -> float:
    """Chance level: the share of the most common exit (what guessing it scores)."""
    exits = np.asarray(exits)
    if not len(exits):
        return 0.0
    return float(np.unique(exits, return_counts=True)[1].max() / len(exits))
