"""Detect, undo and report what a cell's workers changed outside their cell.

Workers that keep the user's permissions (not started as root) could write any file
the user can. The evaluator therefore fingerprints, before each isolated cell, every
finished (``ok``) result under ``out=``, every finished replica agreement
(``out/replicas``, status ``ok`` or ``not_available``) and every file of the victim
cache, and checks them after the cell. No cell legitimately rewrites any of them: a
finished result or replica file is reused, never rewritten (replica_files are written between
cells), and cache entries are written whole under new names. The exception is a result
the run itself writes again (``--force``, or a finished file that is no longer trusted):
those are left out of the fingerprints. So a
change is tampering: results are restored from the evaluator's copy, changed cache
entries are removed (the victim is retrained on next use), and the cell fails naming
its attack and defense. Fingerprints use inode, size and the modification *and*
status-change times; a process cannot set the latter back.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from harness.io.atomic import atomic_write_bytes

Fingerprint = tuple[int, int, int, int]


def _fingerprint(path: Path) -> Fingerprint | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


FINISHED = ("ok", "not_available")
"""Statuses of a finished result (``ok``) or replica agreement (``ok``, ``not_available``)."""


def _finished(blob: bytes) -> bool:
    try:
        return json.loads(blob).get("status") in FINISHED
    except (ValueError, AttributeError, UnicodeDecodeError):
        return False


def _result_files(out: Path) -> list[Path]:
    """Cell results and replica agreement files under ``out``."""
    files = list((out / "cells").rglob("*.json")) if (out / "cells").is_dir() else []
    if (out / "replicas").is_dir():
        files += list((out / "replicas").glob("*.json"))
    return files


@dataclass(frozen=True)
class Tripwire:
    """Fingerprints of finished results and replica_files (with their bytes) and of the cache's
    files."""

    results: dict[Path, tuple[Fingerprint, bytes]]
    cache: dict[Path, Fingerprint]

    @classmethod
    def arm(cls, out: Path | None, cache_dir: Path | None,
            rewrites: frozenset[str] = frozenset()) -> Tripwire:
        """Fingerprint now; ``rewrites``: result files the run itself is about to write
        (cells it runs again), left out so its own writes are not taken for tampering
        (a worker's write to one of them is still refused by Landlock, and its signature
        would not check)."""
        results: dict[Path, tuple[Fingerprint, bytes]] = {}
        for path in _result_files(Path(out)) if out is not None else []:
            if str(path) in rewrites:
                continue
            fp = _fingerprint(path)
            try:
                blob = path.read_bytes()
            except OSError:
                continue
            if fp is not None and _finished(blob):
                results[path] = (fp, blob)
        cache: dict[Path, Fingerprint] = {}
        if cache_dir is not None and Path(cache_dir).is_dir():
            for path in Path(cache_dir).rglob("*"):
                if path.is_file() and not path.name.startswith("."):
                    fp = _fingerprint(path)
                    if fp is not None:
                        cache[path] = fp
        return cls(results, cache)

    def changed(self) -> tuple[list[Path], list[Path]]:
        """(changed results, changed cache files) since :meth:`arm`."""
        results = [p for p, (fp, _) in self.results.items() if _fingerprint(p) != fp]
        cache = [p for p, fp in self.cache.items() if _fingerprint(p) != fp]
        return results, cache

    def repair(self, results: list[Path], cache: list[Path]) -> None:
        """Restore results from the evaluator's copy; remove changed cache files."""
        for path in results:
            atomic_write_bytes(path, self.results[path][1])
        for path in cache:
            try:
                os.unlink(path)
            except OSError:
                pass
