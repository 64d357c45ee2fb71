"""``bocpd``: Adams & MacKay (2007) online run-length recursion on sorted log latencies.

The sorted standardised values are streamed once; the run-length posterior uses a
Normal-Gamma model (Student-t predictive) and a constant hazard ``h = K / m`` (``K`` =
``num_exits``, or ``expected_exits`` when unknown). Run lengths whose posterior falls
``prune`` nats below the best are dropped, so a step costs O(active run lengths).

Changepoint score of index ``s``: ``P(r = lag | x_1..x_{s+lag})``, the probability,
``lag`` observations later, that a segment started at ``s``. With ``K`` given the cuts
are the ``K - 1`` highest scores at least ``min_size * m`` apart; otherwise every local
maximum with score >= ``threshold`` (same spacing, at most ``max_exits - 1``).
Long inputs are first reduced to ``max_points`` evenly spaced order statistics.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from scipy.special import gammaln

from attacks.exit_estimation.base import (
    COMMON_CONSTRAINTS,
    LatencyEstimator,
    Segmentation,
    peak_cuts,
)
from harness.params import Interval


def _student_t_logpdf(x: float, mu: np.ndarray, kappa: np.ndarray, alpha: np.ndarray,
                      beta: np.ndarray) -> np.ndarray:
    df = 2.0 * alpha
    scale2 = beta * (kappa + 1.0) / (alpha * kappa)
    return (gammaln(0.5 * (df + 1)) - gammaln(0.5 * df) - 0.5 * np.log(np.pi * df * scale2)
            - 0.5 * (df + 1) * np.log1p((x - mu) ** 2 / (df * scale2)))


def bocpd_scores(z: np.ndarray, hazard: float, lag: int, prune: float = 30.0,
                 prior: tuple[float, float, float, float] = (1.0, 0.01, 0.01, 0.0)) -> np.ndarray:
    """Changepoint score per index of ``z`` (see the module docstring); score[0] = 0."""
    alpha0, beta0, kappa0, mu0 = prior
    m = len(z)
    score = np.zeros(m)
    log_h, log_1mh = math.log(hazard), math.log1p(-hazard)
    log_r = np.zeros(1)
    start = np.zeros(1, dtype=np.int64)  # index at which each run's segment began
    mu, kappa = np.array([mu0]), np.array([kappa0])
    alpha, beta = np.array([alpha0]), np.array([beta0])
    for t in range(m):
        x = z[t]
        pred = log_r + _student_t_logpdf(x, mu, kappa, alpha, beta)
        top = pred.max()
        cp = top + math.log(np.exp(pred - top).sum()) + log_h
        log_r = np.concatenate([[cp], pred + log_1mh])
        log_r -= log_r.max() + math.log(np.exp(log_r - log_r.max()).sum())
        start = np.concatenate([[t], start])
        beta = np.concatenate([[beta0], beta + kappa * (x - mu) ** 2 / (2.0 * (kappa + 1.0))])
        mu = np.concatenate([[mu0], (kappa * mu + x) / (kappa + 1.0)])
        kappa = np.concatenate([[kappa0], kappa + 1.0])
        alpha = np.concatenate([[alpha0], alpha + 0.5])
        # r = 0 stands for a segment starting at t + 1 (not yet observed)
        start[0] = t + 1
        s = t + 1 - lag
        if 0 < s < m:
            hit = start == s
            score[s] = float(np.exp(log_r[hit]).sum())
        keep = log_r > log_r.max() - prune
        keep[0] = True
        log_r, start = log_r[keep], start[keep]
        mu, kappa, alpha, beta = mu[keep], kappa[keep], alpha[keep], beta[keep]
    return score


class BocpdEstimator(LatencyEstimator):
    """Bayesian online changepoint detection (run-length recursion with pruning)."""

    name: ClassVar[str] = "bocpd"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **COMMON_CONSTRAINTS,
        "lag": [Interval("int", 1, 100_000)],
        "threshold": [Interval("real", 0, 1)],
        "expected_exits": [Interval("int", 1, 64)],
        "min_size": [Interval("real", 0, 0.5, closed="left")],
        "max_points": [Interval("int", 10, 1_000_000)],
        "prune": [Interval("real", 0, None, closed="neither")],
    }

    def __init__(self, *, lag: int = 20, threshold: float = 0.5, expected_exits: int = 4,
                 max_exits: int = 8, min_size: float = 0.01, max_points: int = 4000,
                 prune: float = 30.0, transform: str = "log",
                 tail_density: float = 0.005) -> None:
        self.lag = lag
        self.threshold = threshold
        self.expected_exits = expected_exits
        self.max_exits = max_exits
        self.min_size = min_size
        self.max_points = max_points
        self.prune = prune
        self.transform = transform
        self.tail_density = tail_density

    def _segment(self, z: np.ndarray, num_exits: int | None,
                 rng: np.random.Generator) -> Segmentation:
        m = len(z)
        idx = (np.unique(np.round(np.linspace(0, m - 1, self.max_points)).astype(np.int64))
               if m > self.max_points else np.arange(m))
        sub = z[idx]
        k = num_exits if num_exits is not None else self.expected_exits
        score = bocpd_scores(sub, min(k / len(sub), 0.5), self.lag, self.prune)
        score[1:][np.diff(sub) <= 0] = 0.0  # never cut between equal values
        gap = max(2, math.ceil(self.min_size * len(sub)))
        score[:gap] = score[len(sub) - gap + 1:] = 0.0
        # a cut at i separates sub[i-1] from sub[i], so only i >= 1 is a cut (index 0 would
        # pair sub[-1] with sub[0] and land the cut mid-trace, out of order)
        score = score[1:]
        if num_exits is None:
            left = np.concatenate([[-1.0], score[:-1]])
            right = np.concatenate([score[1:], [-1.0]])
            peaks = (score >= self.threshold) & (score >= left) & (score >= right)
            count = min(int(peaks.sum()), self.max_exits - 1)
            chosen = peak_cuts(np.where(peaks, score, 0.0), count, gap) + 1
        else:
            chosen = peak_cuts(score, num_exits - 1, gap) + 1
            if len(chosen) < num_exits - 1:  # spacing too strict: relax it
                chosen = peak_cuts(score, num_exits - 1, 1) + 1
        # a cut between sub[i-1] and sub[i] -> first data index with value > their midpoint
        mids = 0.5 * (sub[chosen - 1] + sub[chosen])
        cuts = np.searchsorted(z, mids, side="right")
        return Segmentation(np.clip(cuts, 1, m - 1))
