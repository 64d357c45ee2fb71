"""Attack-agnostic leakage of the served exit through the observed latency.

Latencies are binned on log scale into equal-count bins. ``leakage_bits`` is the
plug-in mutual information I(exit; bin) in bits with the Miller-Madow bias correction;
``bayes_exit_accuracy`` is the two-fold cross-fitted accuracy of the histogram Bayes
classifier (majority exit per bin), an estimate of the best any timing-only exit
estimator can reach on these latencies.
"""

from __future__ import annotations

import numpy as np


def _bins(latency_s: np.ndarray, num_bins: int) -> np.ndarray:
    logs = np.log(np.maximum(latency_s, 1e-12))
    edges = np.unique(np.quantile(logs, np.linspace(0, 1, num_bins + 1)[1:-1]))
    return np.searchsorted(edges, logs, side="right")


def leakage_bits(latency_s: np.ndarray, exits: np.ndarray, num_bins: int | None = None) -> float:
    """Mutual information (bits) between served exit and binned log latency."""
    latency_s, exits = np.asarray(latency_s, dtype=np.float64), np.asarray(exits)
    n = len(latency_s)
    if n < 2:
        return 0.0
    nb = num_bins or int(np.clip(np.sqrt(n / 2), 2, 64))
    bins = _bins(latency_s, nb)
    joint = np.zeros((bins.max() + 1, exits.max() + 1))
    np.add.at(joint, (bins, exits), 1.0)
    p = joint / n
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    mi = float((p[nz] * np.log2(p[nz] / (px @ py)[nz])).sum())
    correction = ((nz.sum() - (px > 0).sum() - (py > 0).sum() + 1) / (2 * n)) / np.log(2)
    return max(0.0, mi - correction)


def bayes_exit_accuracy(latency_s: np.ndarray, exits: np.ndarray, num_bins: int | None = None,
                        seed: int = 0) -> float:
    """Cross-fitted accuracy of the majority-exit-per-latency-bin classifier."""
    latency_s, exits = np.asarray(latency_s, dtype=np.float64), np.asarray(exits)
    n = len(latency_s)
    if n < 4:
        return float(np.mean(exits == np.bincount(exits).argmax())) if n else 0.0
    nb = num_bins or int(np.clip(np.sqrt(n / 2), 2, 64))
    bins = _bins(latency_s, nb)
    folds = np.random.default_rng(seed).permutation(n) % 2
    k = exits.max() + 1
    correct = 0
    for f in (0, 1):
        train, test = folds != f, folds == f
        counts = np.zeros((bins.max() + 1, k))
        np.add.at(counts, (bins[train], exits[train]), 1.0)
        fallback = np.bincount(exits[train], minlength=k).argmax()
        pred = np.where(counts.sum(1) > 0, counts.argmax(1), fallback)
        correct += int((pred[bins[test]] == exits[test]).sum())
    return correct / n
