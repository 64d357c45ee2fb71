"""The Bayes-optimal timing-only exit accuracy: the ceiling for every estimator.

For one latency per query the best classifier of the exit is
``argmax_k P(k) p(log latency | k)``. :func:`bayes_optimal_exit_accuracy` estimates
it by ``folds``-fold cross-validation (fold ``i % folds``, so no randomness): on the
training folds, priors are exit frequencies and each exit's class-conditional density
of the log latency is a Gaussian KDE (Silverman bandwidth of that exit's sample,
floored at 1e-3 of the overall spread); the held-out queries are classified by
``argmax prior * density``. Cross-validation keeps the estimate honest (a
resubstitution estimate overfits small classes); it is slightly pessimistic for small
samples, and it converges to the Bayes accuracy as ``n`` grows.
"""

from __future__ import annotations

import numpy as np

from attacks.exit_estimation.base import silverman_bandwidth, validate_latencies
from attacks.exit_estimation.kde import kde_grid
from harness.errors import ConfigError


def _log_density(train: np.ndarray, points: np.ndarray, floor_h: float) -> np.ndarray:
    z = np.sort(train)
    h = max(silverman_bandwidth(z), floor_h)
    grid, dens = kde_grid(z, h)
    return np.log(np.interp(points, grid, dens, left=0.0, right=0.0) + 1e-300)


def bayes_optimal_exit_accuracy(latency_s: np.ndarray, true_exits: np.ndarray,
                                folds: int = 5) -> float:
    """Cross-validated accuracy of ``argmax prior * KDE density`` on log latency."""
    y = np.log(validate_latencies(latency_s))
    exits = np.asarray(true_exits)
    if exits.shape != y.shape or not np.issubdtype(exits.dtype, np.integer):
        raise ConfigError(f"bayes_optimal_exit_accuracy: true_exits must be integers of shape "
                          f"{y.shape}")
    if not isinstance(folds, int) or not 2 <= folds <= len(y):
        raise ConfigError(f"bayes_optimal_exit_accuracy: folds={folds!r} must be in 2..n")
    floor_h = 1e-3 * max(float(y.max() - y.min()), 1e-12)
    fold = np.arange(len(y)) % folds
    correct = 0
    for f in range(folds):
        train, test = fold != f, fold == f
        labels = np.unique(exits[train])
        scores = np.stack([
            np.log(np.mean(exits[train] == k)) + _log_density(y[train & (exits == k)],
                                                              y[test], floor_h)
            for k in labels
        ])
        correct += int(np.sum(labels[np.argmax(scores, axis=0)] == exits[test]))
    return correct / len(y)
