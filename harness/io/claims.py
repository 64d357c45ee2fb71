"""Per-cell claims, so two runners on one ``out=`` never run the same cell twice.

A runner claims a cell by taking a non-blocking ``flock`` on a hidden lock file next to
the cell's result (``.seed<S>-<hash>.json.lock``). A cell whose lock another runner holds
is skipped ("running elsewhere"). The kernel drops a flock when its holder dies, so a
killed runner's cells are free again at once; the file it leaves is only a name.

Lock files are removed on release. Unlinking a lock file races with a runner that has it
open, so after locking, a claimant checks that the name still points at the file it
locked and tries again otherwise (the usual lock-file protocol).
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path


def lock_path(result_path: Path) -> Path:
    """The lock file of the cell whose result is ``result_path``."""
    return result_path.parent / f".{result_path.name}.lock"


@dataclass(frozen=True)
class Claim:
    """A held claim on one cell; :meth:`release` once its result is written."""

    lock: Path
    fd: int

    def release(self) -> None:
        """Remove the lock file, then drop the lock (in that order: see the module doc)."""
        try:
            self.lock.unlink(missing_ok=True)
        finally:
            os.close(self.fd)


def try_claim(result_path: Path) -> Claim | None:
    """Claim the cell of ``result_path``, or None if another runner holds it.

    The descriptor is not inherited by child processes (Python's default), so only this
    process holds the claim and it ends with this process.
    """
    lock = lock_path(result_path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return Claim(lock, fd)
        os.close(fd)  # released and removed by its holder meanwhile: take the new file


def remove_stale_temporaries(result_path: Path) -> int:
    """Delete half-written ``.tmp`` files of this cell (call only while holding its claim).

    A kill between writing and renaming leaves one; nothing reads them, but they would
    pile up. Returns how many were removed.
    """
    removed = 0
    for tmp in result_path.parent.glob(f".{result_path.name[:40]}.*.tmp"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
