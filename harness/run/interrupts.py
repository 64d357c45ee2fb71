"""Tell a real Ctrl-C from a ``KeyboardInterrupt`` a plugin raised.

While a grid runs, :class:`InterruptGuard` installs a SIGINT handler that records the
signal before raising :class:`KeyboardInterrupt` as Python does. The runner then stops
the grid cleanly (finished cells are kept) on a real interrupt, and records any other
``KeyboardInterrupt`` or ``SystemExit`` as the failure of the cell whose plugin raised it.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class InterruptGuard:
    """Context manager; :attr:`requested` is True once the user pressed Ctrl-C."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        raise KeyboardInterrupt

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def is_real(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the user's Ctrl-C (not something a plugin raised)."""
        return isinstance(exc, KeyboardInterrupt) and self.requested
