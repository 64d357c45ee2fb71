"""``kde``: density valleys of the log latencies (the paper's v2; Li et al. CCS'22).

A Gaussian kernel density of the sorted standardised log latencies is evaluated on a
grid (linear binning + Gaussian filter). Bandwidth: ``isj`` (Botev et al. 2010,
improved Sheather-Jones; falls back to Silverman when its fixed point has no root),
``silverman`` or ``scott``, times ``bandwidth_scale``.

Modes are ranked by topographic prominence (``scipy.signal.find_peaks``), which ignores
shoulders of a larger mode. ``K`` unknown: the number of modes whose prominence is at
least ``min_prominence`` x the highest density. ``K`` given: the ``K`` most prominent
modes, and a cut at the deepest point of the density between consecutive ones; with
fewer than ``K`` modes the bandwidth is halved (up to 6 times), and any cut still
missing splits the most populous segment at its median.

Limitation: a populous exit whose latency has a bulk and a distinct shoulder shows two
modes, and with ``K`` given the shoulder can outrank a rare exit (use ``bayes``).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar

import numpy as np
from scipy.fft import dct
from scipy.optimize import brentq
from scipy.signal import find_peaks

from attacks.exit_estimation.base import COMMON_CONSTRAINTS, LatencyEstimator, Segmentation
from harness.metrics.density import kde_grid, silverman_bandwidth
from harness.params import Interval, Options

BANDWIDTHS = ("isj", "silverman", "scott")


def _isj_fixed_point(t: float, n: int, i_sq: np.ndarray, a2: np.ndarray) -> float:
    ell = 7
    f = 2 * np.pi ** (2 * ell) * np.sum(i_sq**ell * a2 * np.exp(-i_sq * np.pi**2 * t))
    for s in range(ell - 1, 1, -1):
        k0 = np.prod(np.arange(1, 2 * s, 2, dtype=np.float64)) / math.sqrt(2 * np.pi)
        const = (1 + 0.5 ** (s + 0.5)) / 3
        time = (2 * const * k0 / (n * f)) ** (2.0 / (3 + 2 * s))
        f = 2 * np.pi ** (2 * s) * np.sum(i_sq**s * a2 * np.exp(-i_sq * np.pi**2 * time))
    return t - (2 * n * math.sqrt(np.pi) * f) ** (-0.4)


def isj_bandwidth(z: np.ndarray, grid: int = 1024) -> float:
    """Improved Sheather-Jones bandwidth (Botev, Grotowski & Kroese 2010)."""
    lo, hi = float(z.min()), float(z.max())
    span = hi - lo
    if span <= 0:
        return 0.0
    lo, hi = lo - span / 10, hi + span / 10
    hist, _ = np.histogram(z, bins=grid, range=(lo, hi))
    a = dct(hist / len(z), type=2)
    i_sq = np.arange(1, grid, dtype=np.float64) ** 2
    a2 = (a[1:] / 2) ** 2
    n = len(np.unique(z))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for upper in (0.1, 0.3, 1.0):
            try:
                t_star = brentq(_isj_fixed_point, 0.0, upper, args=(n, i_sq, a2))
                return math.sqrt(t_star) * (hi - lo)
            except (ValueError, ZeroDivisionError):
                continue
    return silverman_bandwidth(z)


class KdeEstimator(LatencyEstimator):
    """Valleys of a kernel density estimate of the sorted log latencies."""

    name: ClassVar[str] = "kde"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **COMMON_CONSTRAINTS,
        "bandwidth": [Options(*BANDWIDTHS)],
        "bandwidth_scale": [Interval("real", 0, None, closed="neither")],
        "min_prominence": [Interval("real", 0, 1, closed="left")],
    }

    def __init__(self, *, bandwidth: str = "isj", bandwidth_scale: float = 1.0,
                 min_prominence: float = 0.05, max_exits: int = 8, transform: str = "log",
                 tail_density: float = 0.005) -> None:
        self.bandwidth = bandwidth
        self.bandwidth_scale = bandwidth_scale
        self.min_prominence = min_prominence
        self.max_exits = max_exits
        self.transform = transform
        self.tail_density = tail_density

    def bandwidth_of(self, z: np.ndarray) -> float:
        """The data-driven bandwidth (standardised units) this estimator uses for ``z``."""
        self.validate()
        if self.bandwidth == "isj":
            h = isj_bandwidth(z)
        elif self.bandwidth == "silverman":
            h = silverman_bandwidth(z)
        else:
            h = 1.06 * float(np.std(z)) * len(z) ** -0.2
        return max(h, 1e-6 * max(float(z[-1] - z[0]), 1.0)) * self.bandwidth_scale

    def _modes(self, z: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        grid, dens = kde_grid(z, h)
        peaks, props = find_peaks(np.concatenate([[0.0], dens, [0.0]]), prominence=0.0)
        return grid, dens, np.stack([peaks - 1, props["prominences"]])

    def _segment(self, z: np.ndarray, num_exits: int | None,
                 rng: np.random.Generator) -> Segmentation:
        h = self.bandwidth_of(z)
        grid, dens, modes = self._modes(z, h)
        if num_exits is None:
            strong = modes[1] >= self.min_prominence * dens.max()
            k = int(min(max(int(strong.sum()), 1), self.max_exits))
        else:
            k = num_exits
            for _ in range(6):
                if modes.shape[1] >= k:
                    break
                h /= 2
                grid, dens, modes = self._modes(z, h)
        top = np.sort(modes[0, np.argsort(-modes[1], kind="stable")[:k]].astype(np.int64))
        valleys = [a + int(np.argmin(dens[a:b + 1])) for a, b in itertools.pairwise(top)]
        cuts = np.searchsorted(z, grid[valleys], side="right") if valleys else np.empty(0)
        cuts = sorted(int(c) for c in np.clip(cuts, 1, len(z) - 1))
        while len(cuts) < k - 1:  # fewer modes than exits even at a small bandwidth
            edges = [0, *cuts, len(z)]
            j = int(np.argmax(np.diff(edges)))
            cuts = sorted({*cuts, (edges[j] + edges[j + 1]) // 2} - {0})
            if len(cuts) < k - 1 and np.diff([0, *cuts, len(z)]).max() <= 1:
                break
        return Segmentation(np.asarray(cuts, dtype=np.int64))
