"""Noisy confidence: the exit policy decides on perturbed per-exit probabilities.

Exit by exit, as a server decides, each still-undecided query's log-probabilities get
independent Gaussian noise of standard deviation ``scale`` per class (drawn from
``batch.rng``), are renormalised with a softmax, and the victim's own output strategy
(``batch.server.strategy``) decides whether that exit fires on the noisy vector. Queries
near a threshold move between exits at random, so the exits the timing reveals follow
the thresholds only loosely. Only the decision sees the noise: the client receives the
*real* probabilities of the exit that answered, and every query is computed (and its
latency charged) exactly up to that exit, never to the noiseless policy's.
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
    needs_policy_exits = False
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "scale": [Interval("real", 0, None)],
    }

    def __init__(self, scale: float = 0.5) -> None:
        self.scale = scale

    def choose_exits(self, batch: StageBatch) -> np.ndarray:
        strategy = batch.server.strategy
        last = batch.server.num_exits - 1
        exits = np.full(len(batch), last, dtype=np.int64)
        undecided = np.arange(len(batch))
        for k in range(last):
            if not len(undecided):
                break
            noisy = noisy_probs(batch.exit_probs(k, undecided), self.scale, batch.rng)
            fired = strategy.fires_at(k, noisy)
            exits[undecided[fired]] = k
            undecided = undecided[~fired]
        return exits
