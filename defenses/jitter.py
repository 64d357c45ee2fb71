"""Random delay: add fresh noise to every response time.

The delay is drawn from ``batch.rng`` per response, uniform on ``[0, s]`` or exponential
with mean ``s``, where ``s = scale`` times the full network's median latency under the
cell's timing (machine-independent). It blurs the latency of a single query, but fresh
noise averages out: an attacker who repeats a query and keeps the minimum (or the mean)
of its latencies recovers the computation's latency with a few repeats. It is the
baseline the keyed, repeat-stable delay of ``timeguard`` improves on.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from harness.params import Interval, Options
from harness.stages import Defense, StageBatch

DISTRIBUTIONS = ("uniform", "exponential")


class Jitter(Defense):
    """Random delay: add uniform or exponential noise (fresh per response) to every latency.

    Promises: every response waits its computation plus a non-negative delay drawn from
    ``batch.rng`` (scale: ``scale`` times the full network's median latency). Does not
    promise: resistance to repeated queries (fresh noise averages out; the minimum over
    a few repeats is close to the computation), nor a bound on the added latency with
    ``distribution="exponential"``.
    """

    name = "jitter"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "distribution": [Options(*DISTRIBUTIONS)],
        "scale": [Interval("real", 0, None)],
    }

    def __init__(self, distribution: str = "uniform", scale: float = 0.5) -> None:
        self.distribution = distribution
        self.scale = scale

    def shape_latency(self, batch: StageBatch) -> np.ndarray:
        s = self.scale * batch.server.full_latency(0.5)
        n = len(batch)
        delay = (batch.rng.uniform(0.0, s, n) if self.distribution == "uniform"
                 else batch.rng.exponential(s, n))
        return batch.latency_s + delay
