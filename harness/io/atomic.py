"""Atomic file writes: readers see the old file or the complete new one, never a part.

Data goes to a temporary file in the destination folder, is flushed and fsynced, then
``os.replace``-d over the destination (atomic on POSIX within one file system). A crash
or kill mid-write leaves at most a hidden ``.<name>.*.tmp`` file, which nothing reads.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any


def _file_mode() -> int:
    """0666 less this process's umask: what ``open()`` would give a new file (mkstemp's
    temporaries are 0600, which would leave results unreadable to the user's group)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o644


FILE_MODE = _file_mode()


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, with normal permissions; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:40]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def create_private_once(path: Path | str, data: bytes) -> Path:
    """Create ``path`` (mode 0600) holding ``data`` unless it exists; never replace it, so
    two processes racing to create it agree on the first one written."""
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path


def write_json_atomic(path: Path | str, obj: Any, indent: int = 2) -> Path:
    """Canonical JSON (sorted keys, no NaN) written atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode())
