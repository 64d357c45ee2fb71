"""The server's view of one batch's computation: the policy, stage by stage, and lazy exits.

:class:`ExitView` wraps the backend's :class:`~harness.computation.ExitComputation` with
the victim's strategy. The server asks it for the policy's exits (stage after stage,
each query only until its exit fires), ``choose_exits`` may ask it for any exit's
outputs (:meth:`ExitView.probs`, or the lazy :class:`LazyExitProbs` sequence behind
``batch.per_exit_probs``), and :meth:`ExitView.answer` computes each query's answering
exit. Whatever is asked is computed once and charged: the computation's ``depth`` is the
deepest exit each query reached.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import overload

import numpy as np

from harness.computation import ExitComputation
from harness.errors import HarnessError
from harness.stages import read_only
from harness.strategy import OutputStrategy


class ExitView:
    """One batch's exits as the server and its defense stages may ask for them."""

    def __init__(self, computation: ExitComputation, strategy: OutputStrategy) -> None:
        self.computation = computation
        self.strategy = strategy
        self.num_exits = computation.num_exits
        self.size = len(computation.depth)
        self._closed = False

    def close(self) -> None:
        """No more asking: the batch is answered and charged (a defense that kept the view,
        or ``per_exit_probs``, cannot compute more afterwards, uncharged)."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise HarnessError("exit outputs can be asked for only in choose_exits, while the "
                               "batch is served (batch.exit_probs(k)); this batch is already "
                               "answered and charged")

    @property
    def depth(self) -> np.ndarray:
        """The deepest exit computed per query (-1: none)."""
        return self.computation.depth

    def _rows(self, rows: np.ndarray | None) -> np.ndarray:
        return np.arange(self.size) if rows is None else np.asarray(rows, dtype=np.int64)

    def probs(self, k: int, rows: np.ndarray | None = None) -> np.ndarray:
        """Exit ``k``'s probabilities for ``rows`` (read-only), computed and charged."""
        self._check_open()
        return read_only(self.computation.probs(int(k), self._rows(rows)))

    def policy_exits(self, limit: np.ndarray | int | None = None,
                     rows: np.ndarray | None = None) -> np.ndarray:
        """The policy's exit per row, evaluating exit after exit only while a row is still
        undecided and within ``limit`` (-1 where the policy fires only after it)."""
        self._check_open()
        rows = self._rows(rows)
        last = self.num_exits - 1
        bound = np.broadcast_to(np.asarray(last if limit is None else limit, dtype=np.int64),
                                rows.shape)
        out = np.full(len(rows), -1, dtype=np.int64)
        undecided = np.ones(len(rows), dtype=bool)
        for k in range(last):
            active = undecided & (bound >= k)
            if not active.any():
                break
            asked = rows[active]
            probs = self.computation.probs(k, asked)
            start = time.perf_counter()
            fired = self.strategy.fires_at(k, probs)
            self.computation.charge(asked, time.perf_counter() - start)
            hit = np.zeros(len(rows), dtype=bool)
            hit[np.flatnonzero(active)[fired]] = True
            out[hit] = k
            undecided &= ~hit
        out[undecided & (bound >= last)] = last
        return out

    def answer(self, exits: np.ndarray) -> np.ndarray:
        """Each row's probabilities at its answering exit ``exits[row]`` (computed), then
        :meth:`close`."""
        self._check_open()
        exits = np.asarray(exits, dtype=np.int64)
        out = np.empty((len(exits), 0))
        for k in np.unique(exits):
            rows = np.flatnonzero(exits == k)
            probs = self.computation.probs(int(k), rows)
            if out.shape[1] == 0:
                out = np.empty((len(exits), probs.shape[1]), dtype=np.float64)
            out[rows] = probs
        self.close()
        return out

    def sequence(self) -> LazyExitProbs:
        """Every exit's probabilities as a lazy sequence (``batch.per_exit_probs``)."""
        return LazyExitProbs(self)


class LazyExitProbs(Sequence[np.ndarray]):
    """``per_exit_probs`` that computes (and charges) an exit for the whole batch only when
    it is indexed; iterating it computes every exit."""

    def __init__(self, view: ExitView) -> None:
        self._view = view

    def __len__(self) -> int:
        return self._view.num_exits

    @overload
    def __getitem__(self, k: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, k: slice) -> tuple[np.ndarray, ...]: ...

    def __getitem__(self, k: int | slice) -> np.ndarray | tuple[np.ndarray, ...]:
        if isinstance(k, slice):
            return tuple(self._view.probs(i) for i in range(*k.indices(len(self))))
        index = int(k) + len(self) if int(k) < 0 else int(k)
        if not 0 <= index < len(self):
            raise IndexError(f"exit {k} does not exist; the network has {len(self)} exits")
        return self._view.probs(index)
