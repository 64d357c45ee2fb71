"""Random exit decisions: sometimes answer from an exit the policy did not choose.

With probability ``p`` per query (drawn from ``batch.rng``) the query is answered from
another exit, uniformly among the other ``K - 1``; otherwise from the exit the policy
chose. The decision is made as a server makes it, exit by exit: a switched query draws
``j`` uniformly in ``0..K-2`` and asks the policy only up to exit ``j`` - if the policy
would fire there or earlier the query answers from ``j + 1``, else from ``j`` - so every
query is computed, and its latency charged, exactly up to the exit that answers it, never
to the policy's exit when that lies deeper. The timing side channel then reports a noisy
exit, and an estimator's exits disagree with the policy's on about ``p`` of the queries.
The client receives that exit's real probabilities.
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
    needs_policy_exits = False
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "p": [Interval("real", 0, 1)],
    }

    def __init__(self, p: float = 0.1) -> None:
        self.p = p

    def choose_exits(self, batch: StageBatch) -> np.ndarray:
        k = batch.server.num_exits
        n = len(batch)
        switch = batch.rng.random(n) < self.p
        other = batch.rng.integers(0, k - 1, n) if k > 1 else np.zeros(n, dtype=np.int64)
        exits = np.empty(n, dtype=np.int64)
        stay = np.flatnonzero(~switch | (k == 1))
        if len(stay):
            exits[stay] = batch.policy_exits_up_to(rows=stay)
        moved = np.flatnonzero(switch & (k > 1))
        if len(moved):  # the policy only as deep as the drawn exit: fired by then -> one deeper
            fired = batch.policy_exits_up_to(limit=other[moved], rows=moved) >= 0
            exits[moved] = other[moved] + fired
        return exits
