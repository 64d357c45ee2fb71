"""The exits of one batch of queries, computed on demand, as a deployed early-exit server does.

A server computes a query only as deep as it must: stage after stage until its exit
answers. :class:`ExitComputation` is that computation for one batch: ``probs(k, rows)``
returns exit ``k``'s probabilities for ``rows``, computing each row onward from the
deepest stage it already reached and never further; ``depth[i]`` is the deepest exit
computed for row ``i`` (-1: none yet), which is what the server charges the query
(its latency under modelled timing, its compute cost). A backend with stages returns a
real one from :meth:`harness.protocol.ServedModel.compute_exits`; timed (``live``), it
also measures each row's compute on its own (``seconds``).

:class:`EagerComputation` is the fallback for a backend without stages: it has every
exit at once (computed by ``exit_probs``) and charges only what was asked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np


class ExitComputation(ABC):
    """Exits of a batch on demand; ``depth`` and (when timed) ``seconds`` per row."""

    num_exits: int
    depth: np.ndarray
    seconds: np.ndarray | None = None
    """Measured compute time per row (timed computations only), else None."""
    lazy: ClassVar[bool] = True
    """Whether the wall time depends on how deep rows are computed (it does when rows are
    really computed on demand; the server then holds modelled responses to an
    exit-independent allowance, :mod:`harness.serving.allowance`)."""

    @abstractmethod
    def probs(self, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        """Probabilities (float64) of exit ``k`` for ``rows`` (all rows when None)."""

    def charge(self, rows: np.ndarray, seconds: float) -> None:
        """Add ``seconds`` of the server's own work (evaluating the policy on a stage's
        outputs) to ``rows``, shared evenly, when the computation is timed."""
        if self.seconds is not None and len(rows):
            self.seconds[rows] += seconds / len(rows)

    @staticmethod
    def _rows(rows: np.ndarray | None, n: int) -> np.ndarray:
        return np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)

    def _check(self, k: int) -> None:
        if not 0 <= int(k) < self.num_exits:
            raise IndexError(f"exit {k} does not exist; the network has exits "
                             f"0..{self.num_exits - 1}")


class EagerComputation(ExitComputation):
    """Every exit already computed (a backend without stages); charged as asked."""

    lazy = False

    def __init__(self, per_exit: Sequence[np.ndarray]) -> None:
        self._per_exit = [np.asarray(p, dtype=np.float64) for p in per_exit]
        self.num_exits = len(self._per_exit)
        self.depth = np.full(len(self._per_exit[0]) if self._per_exit else 0, -1, dtype=np.int64)

    def probs(self, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        self._check(k)
        rows = self._rows(rows, len(self.depth))
        self.depth[rows] = np.maximum(self.depth[rows], int(k))
        return self._per_exit[int(k)][rows]
