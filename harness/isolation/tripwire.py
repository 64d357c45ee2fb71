"""Detect, undo and report what a cell's workers changed outside their cell.

Workers that keep the user's permissions (not started as root) could write any file
the user can. The evaluator therefore fingerprints, before each isolated cell, every
finished (``ok``) result under ``out=`` and every file of the victim cache, and
checks them after the cell. No cell legitimately rewrites either: a finished result is
reused, never rewritten, and cache entries are written whole under new names. So a
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

Fingerprint = tuple[int, int, int, int]


def _fingerprint(path: Path) -> Fingerprint | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _ok_result(blob: bytes) -> bool:
    try:
        return json.loads(blob).get("status") == "ok"
    except (ValueError, AttributeError, UnicodeDecodeError):
        return False


@dataclass(frozen=True)
class Tripwire:
    """Fingerprints of finished results (with their bytes) and of the cache's files."""

    results: dict[Path, tuple[Fingerprint, bytes]]
    cache: dict[Path, Fingerprint]

    @classmethod
    def arm(cls, out: Path | None, cache_dir: Path | None) -> Tripwire:
        results: dict[Path, tuple[Fingerprint, bytes]] = {}
        if out is not None and (out / "cells").is_dir():
            for path in (out / "cells").rglob("*.json"):
                fp = _fingerprint(path)
                try:
                    blob = path.read_bytes()
                except OSError:
                    continue
                if fp is not None and _ok_result(blob):
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
        from harness.run.atomic import atomic_write_bytes

        for path in results:
            atomic_write_bytes(path, self.results[path][1])
        for path in cache:
            try:
                os.unlink(path)
            except OSError:
                pass
