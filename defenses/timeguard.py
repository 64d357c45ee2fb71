"""Keyed, repeat-stable delays for early exits (after TimeGuard, Li et al., CCS 2022).

Fresh random delays (``jitter``) average out: repeat a query a few times, keep the
minimum latency, and the noise is gone. ``timeguard`` instead draws each early-exit
response's delay from a *keyed hash of the input*, so every repeat of a query waits the
same delay and repeating buys the attacker nothing. Late exits are not delayed, and no
delay pushes a response past the late exits' latency: the defense hides *which early*
exit answered, and how early, without slowing anything below the full network's speed.

How the delay is made, per admitted query ``x`` answered from exit ``k``:

1. Quantise: ``g = round(x / step)`` element-wise, ``step = resolution * input_span``
   (the grid is anchored at 0). ``input_span`` is the width of the input range: 1 for
   inputs in [0, 1] (the default, as every built-in dataset), 2 for [-1, 1]. The server
   description carries no input range, so it is a parameter.
2. Hash: ``u = HMAC-SHA256(secret, canonical bytes of g and its shape)`` read as a number
   in [0, 1). ``secret`` is :attr:`harness.stages.ServerInfo.secret`, a per-cell server
   key the client never sees (the defense refuses to run without one).
3. Delay: ``u * headroom_k`` with ``headroom_k = max(cap - median latency of exit k, 0)``
   and ``cap`` the last exit's latency at ``quantile`` under the cell's timing; the last
   exit gets none. The total is then clipped to ``max(computation, cap)``.

What it promises:

* identical inputs get identical delays - across repeats, batches, batch positions and
  clients - and so do near-identical ones whose every coordinate stays in the same grid
  cell (a perturbation well below ``step / 2`` of an input not on a cell boundary);
* the total never exceeds the cap (a computation already past it is answered as it is);
* last-exit responses are untouched (latency, exit, outputs), early-exit ones only delayed.

What it does NOT promise:

* fresh noise is had by moving any coordinate across a grid boundary (a perturbation of
  at least half a step somewhere; less for a coordinate that sits near a boundary), at
  the cost of changing the input; an attacker who queries many such neighbours and
  averages their latencies can remove the noise if the exit does not change between
  them - the delay hides single inputs, not a smooth neighbourhood;
* indistinguishability of exits: early exits spread over ``[their latency, cap]`` while
  the last exit keeps its own distribution around the cap, so a latency well below the
  cap still says "early exit"; the computation's own noise still adds to the delay;
* anything about outputs (probability vectors still reveal the answering exit's
  confidence) or exit decisions, and secrecy once the server's key leaks (anyone with it
  computes every delay).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, ClassVar

import numpy as np

from harness.params import Interval
from harness.stages import Defense, StageBatch

DOMAIN = b"harness/timeguard/v1"
"""Prefix of every hashed message (versioned: changing the encoding changes the label)."""


def grid_cells(inputs: np.ndarray, step: float) -> np.ndarray:
    """Each input rounded to the grid of ``step`` (float64 cell indices, no negative zero)."""
    return np.rint(np.asarray(inputs, dtype=np.float64) / step) + 0.0


def keyed_uniform(secret: bytes, cells: np.ndarray) -> np.ndarray:
    """One number in [0, 1) per row of ``cells``: HMAC-SHA256 of the row and its shape."""
    shape = np.asarray(cells.shape[1:], dtype="<i8").tobytes()
    out = np.empty(len(cells), dtype=np.float64)
    for i, row in enumerate(cells):
        message = DOMAIN + shape + np.ascontiguousarray(row, dtype="<f8").tobytes()
        digest = hmac.new(secret, message, hashlib.sha256).digest()
        out[i] = int.from_bytes(digest[:8], "little") / 2.0**64
    return out


class TimeGuard(Defense):
    """Keyed delays for early exits: the same input always waits the same, capped delay.

    Early-exit responses wait ``u * (cap - median latency of their exit)``, ``u`` in
    [0, 1) from an HMAC (server key) of the input quantised to a grid of ``resolution *
    input_span``; ``cap`` is the last exit's latency at ``quantile``; totals never pass
    it, last exits are untouched. See the module docstring for promises and limits.
    """

    name = "timeguard"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "quantile": [Interval("real", 0, 1)],
        "resolution": [Interval("real", 0, 1, closed="right")],
        "input_span": [Interval("real", 0, None, closed="neither")],
    }

    def __init__(self, quantile: float = 0.5, resolution: float = 0.0625,
                 input_span: float = 1.0) -> None:
        self.quantile = quantile
        self.resolution = resolution
        self.input_span = input_span

    def cap(self, batch: StageBatch) -> float:
        """The latency no delayed response exceeds (seconds)."""
        return batch.server.full_latency(self.quantile)

    def delays(self, batch: StageBatch) -> np.ndarray:
        """The keyed delay of each query before clipping to the cap (0 for the last exit)."""
        server = batch.server
        if not server.secret:
            raise ValueError("timeguard needs the server's secret key (ServerInfo.secret); "
                             "this server was described without one")
        cap = self.cap(batch)
        headroom = np.array([max(cap - server.latency_quantile(k, 0.5), 0.0)
                             for k in range(server.num_exits)])
        headroom[-1] = 0.0
        cells = grid_cells(batch.inputs, self.resolution * self.input_span)
        return keyed_uniform(server.secret, cells) * headroom[np.asarray(batch.exits)]

    def shape_latency(self, batch: StageBatch) -> np.ndarray:
        latency = batch.latency_s
        room = np.maximum(self.cap(batch) - latency, 0.0)
        return latency + np.minimum(self.delays(batch), room)
