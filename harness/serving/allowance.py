"""Exit-independent wall time under modelled timing: the compute allowance of a batch.

Under a modelled timing (``realistic``, ``analytic``, ``replay``) the latency a client is
told is the model's, and the server's real computation must not add a second channel.
But a lazily computed batch (:mod:`harness.serving.exits`) takes longer the deeper its
queries exit, and an attack can time its own calls (an isolated client process, or an
HTTP client). So the endpoint holds a lazily computed batch until its **allowance** has
passed since the computation began: what computing the same number of inputs through
every exit takes on this machine (the backend's batched pass on zero inputs, the slower
of two runs, measured once per batch size), times :data:`FACTOR`, plus :data:`MARGIN_S`.
Then the wall time of a batch depends on its size, not its exits, unless a computation
overruns the allowance (a scheduler hiccup), and every query still costs no more than
before exits were lazy. Live timing needs none of this: there the wall time is the
channel, held to the shaped latency.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np

from harness.protocol import ServedModel

FACTOR = 2.0
"""Allowance over the measured full pass (the staged path has per-stage overhead)."""
MARGIN_S = 200e-6
"""Fixed allowance on top (timer and scheduling jitter of small batches)."""
MAX_SIZES = 256
"""Batch sizes whose allowance is remembered (the oldest is measured again)."""


class ComputeAllowance:
    """Per batch size, how long a full computation of that many inputs may take."""

    def __init__(self, served: ServedModel) -> None:
        self.served = served
        self._seconds: OrderedDict[int, float] = OrderedDict()

    def seconds(self, like: np.ndarray) -> float:
        """The allowance of a batch shaped like ``like`` (measured on zeros, not on it)."""
        n = len(like)
        if n not in self._seconds:
            zeros = np.zeros_like(like, dtype=np.float32)
            runs = []
            for _ in range(2):
                t0 = time.perf_counter()
                self.served.exit_probs(zeros)
                runs.append(time.perf_counter() - t0)
            self._seconds[n] = FACTOR * max(runs) + MARGIN_S
            if len(self._seconds) > MAX_SIZES:
                self._seconds.popitem(last=False)
        self._seconds.move_to_end(n)
        return self._seconds[n]
