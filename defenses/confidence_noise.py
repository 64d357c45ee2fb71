"""Noisy confidence: the exit policy decides on perturbed per-exit probabilities.

Each exit's log-probabilities get independent Gaussian noise of standard deviation
``scale`` per class (drawn from ``batch.rng``), are renormalised with a softmax, and the
victim's own output strategy (``batch.server.strategy``) picks the exit from those noisy
vectors. Queries near a threshold move between exits at random, so the exits the
timing reveals follow the thresholds only loosely. Only the decision sees the noise: the
client receives the *real* probabilities of the exit that answered (the endpoint fills
the outputs from the chosen exit), and in live timing the victim really computes up to
that exit.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from harness.params import Interval
from harness.stages import Defense, StageBatch

LOG_FLOOR = 1e-30
"""Probabilities are floored here before the log (an exact 0 would stay 0 under noise)."""


def noisy_probs(probs: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """``softmax(log probs + scale * N(0, 1))`` per row (float64)."""
    logits = np.log(np.maximum(np.asarray(probs, dtype=np.float64), LOG_FLOOR))
    logits = logits + scale * rng.standard_normal(logits.shape)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


class ConfidenceNoise(Defense):
    """Confidence noise: the exit policy decides on log-probabilities plus Gaussian noise.

    Promises: each query's exit is the victim's strategy applied to independently
    perturbed copies of its per-exit probabilities (noise ``scale`` on every class's
    log-probability of every exit); the client sees the real probabilities of that exit.
    Does not promise: hiding confident or hopeless queries (noise moves only queries
    near a threshold), resistance to repeated queries (fresh noise per query: the most
    frequent exit of a repeated query is the noiseless one for modest ``scale``), nor
    accuracy or cost (a query sent to another exit is answered by it).
    """

    name = "confidence_noise"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "scale": [Interval("real", 0, None)],
    }

    def __init__(self, scale: float = 0.5) -> None:
        self.scale = scale

    def choose_exits(self, batch: StageBatch) -> np.ndarray:
        noisy = [noisy_probs(p, self.scale, batch.rng) for p in batch.per_exit_probs]
        return batch.server.strategy.exits(noisy)
