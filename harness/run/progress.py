"""A dependency-free progress line on stderr (redraws in place on a terminal)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Counts finished cells and prints ``[i/n] elapsed eta label``."""

    def __init__(self, total: int, enabled: bool = True, stream=None) -> None:
        self.total = total
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.monotonic()

    def note(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.stream, flush=True)

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        print(f"[{self.done}/{self.total}] {elapsed:6.1f}s elapsed, eta {eta:6.1f}s  {label}",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.enabled and self.total:
            print(f"done in {time.monotonic() - self.start:.1f}s", file=self.stream, flush=True)
