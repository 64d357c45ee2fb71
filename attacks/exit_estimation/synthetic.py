"""Synthetic latency traces with known exits (tests, benchmarks, attack prototypes).

Model (the analytic timing model of docs/design.md section 5, with a simpler tail):
``latency = (base_s + cost_fraction[exit] * full_s) * exp(noise * N(0, 1))``, and with
probability ``tail_prob`` a query is further slowed by a factor drawn uniformly from
``tail_factor`` (scheduler hiccups: docs/design.md section 9).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.errors import ConfigError


def staircase_exits(num_exits: int, n: int, rng: np.random.Generator,
                    weights: Sequence[float] | None = None) -> np.ndarray:
    """``n`` exits drawn i.i.d. from ``weights`` (uniform by default), int64."""
    if num_exits < 1 or n < 0:
        raise ConfigError(f"staircase_exits: need num_exits >= 1 and n >= 0, got {num_exits}, {n}")
    p = np.full(num_exits, 1.0 / num_exits) if weights is None else np.asarray(weights, float)
    if p.shape != (num_exits,) or (p < 0).any() or not p.sum() > 0:
        raise ConfigError(f"staircase_exits: weights {weights!r} must be {num_exits} values >= 0")
    return rng.choice(num_exits, size=n, p=p / p.sum()).astype(np.int64)


def synthetic_latencies(exits: np.ndarray, cost_fraction: Sequence[float],
                        rng: np.random.Generator, *, base_s: float = 60e-6,
                        full_s: float = 500e-6, noise: float = 0.05, tail_prob: float = 0.0,
                        tail_factor: tuple[float, float] = (2.0, 8.0)) -> np.ndarray:
    """Latency (seconds) for each exit in ``exits`` (0-based) under the model above."""
    exits = np.asarray(exits, dtype=np.int64)
    frac = np.asarray(cost_fraction, dtype=np.float64)
    if exits.size and (exits.min() < 0 or exits.max() >= len(frac)):
        raise ConfigError(f"synthetic_latencies: exits must be in 0..{len(frac) - 1}")
    if base_s < 0 or full_s <= 0 or noise < 0 or not 0 <= tail_prob <= 1:
        raise ConfigError("synthetic_latencies: need base_s >= 0, full_s > 0, noise >= 0, "
                          "0 <= tail_prob <= 1")
    lo, hi = tail_factor
    if not 1 <= lo <= hi:
        raise ConfigError(f"synthetic_latencies: tail_factor {tail_factor!r} must be 1 <= lo <= hi")
    clean = base_s + frac[exits] * full_s
    jitter = np.exp(noise * rng.standard_normal(exits.size))
    slow = rng.random(exits.size) < tail_prob
    factor = np.where(slow, rng.uniform(lo, hi, exits.size), 1.0)
    return clean * jitter * factor
