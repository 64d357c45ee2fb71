"""Latency padding: hold responses back so the waiting time says less about the exit.

* ``pad_constant`` holds every response to one target latency, by default the full
  network's 0.99 latency quantile under the cell's timing (``ServerInfo``), so the
  parameter means the same on any machine. A response whose computation already took
  longer (an *overrun*) keeps its own latency - a server cannot answer before it has
  computed - and is counted in :meth:`PadConstant.report`. Overruns are the only
  responses whose latency still varies, so their rate bounds what padding leaks.
* ``pad_bucket`` rounds each latency up to the next multiple of a bucket width, by
  default a quarter of the full network's median latency: exits whose latencies fall in
  one bucket become indistinguishable, at a cost of less than one bucket per response.

Both only ever add waiting time: the exit, the outputs and the computation are untouched,
so accuracy is unchanged and the cost is latency (``latency_overhead_*``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from harness.params import Interval
from harness.stages import Defense, StageBatch


class PadConstant(Defense):
    """Constant-time responses: hold every answer to a target latency (overruns counted).

    ``target_s`` (seconds) overrides the target; otherwise it is the full network's
    latency at ``quantile`` under the cell's timing. Promises: every response whose
    computation finishes within the target is answered at exactly the target, whatever
    its exit. Does not promise: constant latency for overruns (they keep their own
    latency; ``report()`` gives ``answered``, ``overruns`` and ``overrun_rate``), nor
    anything about the outputs, which still carry the answering exit's probabilities.
    """

    name = "pad_constant"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "quantile": [Interval("real", 0, 1)],
        "target_s": [Interval("real", 0, None, closed="neither"), None],
    }

    def __init__(self, quantile: float = 0.99, target_s: float | None = None) -> None:
        self.quantile = quantile
        self.target_s = target_s

    def reset(self) -> None:
        self._answered = 0
        self._overruns = 0

    def target(self, batch: StageBatch) -> float:
        """The latency every response is held to (seconds)."""
        if self.target_s is not None:
            return float(self.target_s)
        return batch.server.full_latency(self.quantile)

    def shape_latency(self, batch: StageBatch) -> np.ndarray:
        target = self.target(batch)
        self._answered += len(batch)
        self._overruns += int(np.count_nonzero(batch.latency_s > target))
        return np.maximum(batch.latency_s, target)

    def report(self) -> dict[str, float]:
        answered = getattr(self, "_answered", 0)
        overruns = getattr(self, "_overruns", 0)
        return {"answered": answered, "overruns": overruns,
                "overrun_rate": overruns / answered if answered else 0.0}


class PadBucket(Defense):
    """Bucketed latency: round every response time up to the next multiple of a width.

    The width is ``width_s`` seconds when given, else ``width`` times the full network's
    median latency under the cell's timing. Promises: every latency is a whole number of
    widths, at least the computation's and less than one width longer. Does not promise:
    hiding exits whose latencies fall into different buckets (a width below the gap
    between two exits' latencies leaves them apart), nor hiding the computation's noise,
    which moves responses between buckets.
    """

    name = "pad_bucket"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "width": [Interval("real", 0, None, closed="neither")],
        "width_s": [Interval("real", 0, None, closed="neither"), None],
    }

    def __init__(self, width: float = 0.25, width_s: float | None = None) -> None:
        self.width = width
        self.width_s = width_s

    def bucket(self, batch: StageBatch) -> float:
        """The bucket width (seconds)."""
        if self.width_s is not None:
            return float(self.width_s)
        return self.width * batch.server.full_latency(0.5)

    def shape_latency(self, batch: StageBatch) -> np.ndarray:
        width = self.bucket(batch)
        # max() guards the last ulp: ceil(l / w) * w can round just below l
        return np.maximum(np.ceil(batch.latency_s / width) * width, batch.latency_s)
