"""Timing deployments: named, calibrated predictions of a victim's latency per exit.

A deployment is one way of running a server, calibrated from live traces recorded that
way (``benchmarks/latency_corpus.py``) and checked on traces it never saw
(``benchmarks/calibrate_timing.py``: for each held-out trace, the deployment's Bayes exit
accuracy for that trace's network and exit mix against the trace's own). Its only inputs
for a victim are the exits' cost fractions (and, through the queries, the exit mix):
exit ``k`` costs ``(base_s + cost_fraction[k] * full_s) * exp(deviation * d_k)``, the
``d_k`` standard normal draws fixed by the cost fractions themselves, and each query
waits ``exp(spread * s)`` times that, ``s`` drawn from the deployment's ``shape`` (a
quantile function at :data:`LEVELS`) with the cell's seeded generator. Same seed, same
latencies, on any machine.

* ``dedicated`` (the default): one request at a time on an otherwise idle server - the
  attacker-favourable setting, recorded pinned with steal time and CPU pressure under
  :data:`harness.timing.load_monitor.QUIET`. Only cells under it with unmodified timing
  are ranked: a defense is never credited for the noise of a machine.
* ``shared``: a multi-tenant machine (the first corpus, recorded while other heavy jobs
  shared it; the realistic timing's calibration until the dedicated one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

LEVELS = (
    0.0005, 0.002, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.11, 0.12, 0.13,
    0.14, 0.15, 0.16, 0.17, 0.18, 0.19, 0.2, 0.21, 0.22, 0.23, 0.24, 0.25, 0.26, 0.27, 0.28, 0.29,
    0.3, 0.31, 0.32, 0.33, 0.34, 0.35, 0.36, 0.37, 0.38, 0.39, 0.4, 0.41, 0.42, 0.43, 0.44, 0.45,
    0.46, 0.47, 0.48, 0.49, 0.5, 0.51, 0.52, 0.53, 0.54, 0.55, 0.56, 0.57, 0.58, 0.59, 0.6, 0.61,
    0.62, 0.63, 0.64, 0.65, 0.66, 0.67, 0.68, 0.69, 0.7, 0.71, 0.72, 0.73, 0.74, 0.75, 0.76, 0.77,
    0.78, 0.79, 0.8, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.87, 0.88, 0.89, 0.9, 0.91, 0.92, 0.93,
    0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 0.998, 0.9995)
"""Quantile levels of every deployment's ``shape``."""
SHARED_SHAPE = (
    -0.5170, -0.4969, -0.4569, -0.4423, -0.4316, -0.4217, -0.4106, -0.3994, -0.3866, -0.3757,
    -0.3673, -0.3592, -0.3508, -0.3415, -0.3305, -0.3190, -0.3083, -0.2985, -0.2891, -0.2793,
    -0.2692, -0.2591, -0.2480, -0.2374, -0.2266, -0.2170, -0.2093, -0.2014, -0.1932, -0.1849,
    -0.1766, -0.1686, -0.1602, -0.1520, -0.1435, -0.1348, -0.1260, -0.1169, -0.1073, -0.0980,
    -0.0895, -0.0801, -0.0713, -0.0620, -0.0528, -0.0445, -0.0358, -0.0278, -0.0197, -0.0127,
    -0.0060, 0.0000, 0.0061, 0.0124, 0.0188, 0.0255, 0.0329, 0.0410, 0.0488, 0.0563, 0.0643,
    0.0722, 0.0805, 0.0883, 0.0963, 0.1046, 0.1130, 0.1218, 0.1295, 0.1375, 0.1451, 0.1533, 0.1610,
    0.1692, 0.1780, 0.1863, 0.1939, 0.2023, 0.2114, 0.2208, 0.2301, 0.2395, 0.2491, 0.2580, 0.2682,
    0.2776, 0.2874, 0.2975, 0.3084, 0.3187, 0.3302, 0.3420, 0.3540, 0.3653, 0.3767, 0.3884, 0.4017,
    0.4202, 0.4461, 0.4869, 0.6075, 1.0112, 1.5263)
"""The shared deployment's shape: log latency minus its exit's median log latency, pooled
over the quiet tuned traces of the multi-tenant corpus (one thread, no background process)."""
DEDICATED_SHAPE = (
    -0.3001, -0.2586, -0.1973, -0.1601, -0.1349, -0.1177, -0.1041, -0.0937, -0.0850, -0.0784,
    -0.0731, -0.0685, -0.0644, -0.0608, -0.0576, -0.0545, -0.0517, -0.0494, -0.0474, -0.0454,
    -0.0435, -0.0417, -0.0400, -0.0382, -0.0364, -0.0347, -0.0329, -0.0312, -0.0296, -0.0281,
    -0.0266, -0.0251, -0.0238, -0.0224, -0.0211, -0.0198, -0.0186, -0.0175, -0.0162, -0.0151,
    -0.0139, -0.0127, -0.0116, -0.0103, -0.0091, -0.0078, -0.0066, -0.0053, -0.0041, -0.0027,
    -0.0013, 0.0000, 0.0014, 0.0029, 0.0043, 0.0059, 0.0074, 0.0090, 0.0106, 0.0122, 0.0139,
    0.0157, 0.0175, 0.0194, 0.0214, 0.0233, 0.0253, 0.0273, 0.0295, 0.0318, 0.0343, 0.0370,
    0.0398, 0.0427, 0.0459, 0.0494, 0.0532, 0.0572, 0.0615, 0.0662, 0.0716, 0.0778, 0.0843,
    0.0913, 0.0987, 0.1071, 0.1167, 0.1279, 0.1410, 0.1556, 0.1713, 0.1874, 0.2025, 0.2182,
    0.2340, 0.2530, 0.2761, 0.3083, 0.3569, 0.4552, 0.7073, 2.5211, 3.8685)
"""The dedicated deployment's shape: log latency minus its exit's median log latency,
pooled over the quiet fitting traces of the dedicated corpus (``benchmarks/
calibrate_timing.py --constants`` prints it)."""


@dataclass(frozen=True)
class Deployment:
    """A named timing calibration (see the module docstring)."""

    name: str
    base_s: float
    full_s: float
    spread: float
    deviation: float
    shape: tuple[float, ...]
    description: str

    def exit_latencies(self, cost_fraction: tuple[float, ...]) -> np.ndarray:
        """The clean latency of every exit (before the per-query shape)."""
        frac = np.asarray(cost_fraction, dtype=np.float64)
        key = int.from_bytes(hashlib.sha256(np.round(frac, 12).tobytes()).digest()[:8], "little")
        departures = np.random.default_rng(key).standard_normal(len(frac))
        return (self.base_s + frac * self.full_s) * np.exp(self.deviation * departures)

    def latencies(self, exits: np.ndarray, cost_fraction: tuple[float, ...],
                  rng: np.random.Generator) -> np.ndarray:
        """One latency per query served at ``exits`` (seeded by ``rng``)."""
        exits = np.asarray(exits, dtype=np.int64)
        shape = np.interp(rng.random(len(exits)), LEVELS, self.shape)
        return self.exit_latencies(cost_fraction)[exits] * np.exp(self.spread * shape)


DEPLOYMENTS: dict[str, Deployment] = {
    "dedicated": Deployment(
        "dedicated", base_s=29.28e-6, full_s=731.5e-6, spread=0.6, deviation=0.0487,
        shape=DEDICATED_SHAPE,
        description="one request at a time on an otherwise idle server (quiet, pinned)"),
    "shared": Deployment(
        "shared", base_s=60e-6, full_s=500e-6, spread=1.0, deviation=0.045,
        shape=SHARED_SHAPE,
        description="a multi-tenant machine shared with other heavy jobs"),
}
"""Every deployment by name (``timing.deployment=``)."""
DEFAULT_DEPLOYMENT = "dedicated"
