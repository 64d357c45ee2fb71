"""Random exit decisions: sometimes answer from an exit the policy did not choose.

With probability ``p`` per query (drawn from ``batch.rng``) the query is answered from
another exit, uniformly among the other ``K - 1``; otherwise from the exit the policy
chose. The latency then follows the exit that really answered (in live timing the
victim really computes up to it), so the timing side channel reports a noisy exit and
an estimator's exits disagree with the policy's on about ``p`` of the queries. The
client receives that exit's real probabilities.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from harness.params import Interval
from harness.stages import Defense, StageBatch


class ExitNoise(Defense):
    """Exit noise: with probability p answer from another exit, uniformly among the rest.

    Promises: ``p=0`` answers exactly like ``none``; with ``p=1`` no query is answered
    by the exit its policy chose (when the network has more than one exit); the outputs
    are the answering exit's real probabilities. Does not promise: hiding the policy
    from repeated queries (fresh draws per query, so the most frequent exit of a
    repeated query is the policy's while ``p < (K - 1) / K``), nor accuracy or cost
    (a switched early exit answers less accurately, a switched late one costs more).
    """

    name = "exit_noise"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "p": [Interval("real", 0, 1)],
    }

    def __init__(self, p: float = 0.1) -> None:
        self.p = p

    def choose_exits(self, batch: StageBatch) -> np.ndarray:
        exits = np.asarray(batch.exits, dtype=np.int64)
        k = batch.server.num_exits
        n = len(batch)
        switch = batch.rng.random(n) < self.p
        shift = batch.rng.integers(1, k, n) if k > 1 else np.zeros(n, dtype=np.int64)
        return np.where(switch, (exits + shift) % k, exits)
