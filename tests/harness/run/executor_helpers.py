"""Helpers of the executor tests: a runner in a child process, and a /proc orphan scan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

MARK_VAR = "EXEC_TEST_MARK"
RUNNER = ("import json, sys\n"
          "from harness.run.config import parse_overrides\n"
          "from harness.run.runner import run_grid\n"
          "s = run_grid(parse_overrides(sys.argv[1:]), show_progress=False)\n"
          "print(json.dumps({'ran': s.ran, 'reused': s.reused, 'elsewhere': s.elsewhere, "
          "'failed': s.failed}))\n")


def start_runner(args: list[str]) -> subprocess.Popen:
    """``run_grid`` on ``args`` in a child interpreter (it inherits the test's environment)."""
    return subprocess.Popen([sys.executable, "-c", RUNNER, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def runner_summary(proc: subprocess.Popen, timeout: float = 240) -> dict[str, int]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _stat_fields(pid: str) -> list[str]:
    """Fields of ``/proc/PID/stat`` after the command name (state, ppid, ...); [] if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _state(pid: str) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def alive(pid: int | str) -> bool:
    """Is process ``pid`` running (neither gone nor a zombie)?"""
    return _state(str(pid)) not in (None, "Z")


def orphans_of_other_runs(mark: str) -> list[int]:
    """:func:`marked_processes` less this process' own children (after a run in this process
    its fork server and resource tracker live on as long as it does: they are not orphans)."""
    own = str(os.getpid())
    return [pid for pid in marked_processes(mark) if _stat_fields(str(pid))[1:2] != [own]]


def marked_processes(mark: str) -> list[int]:
    """Live processes (not this one, not zombies) whose environment carries ``mark``.

    Children inherit the environment, so this finds every process a runner started,
    whether or not its parent is still alive - no psutil needed.
    """
    needle = f"{MARK_VAR}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0") and alive(entry.name):
            found.append(int(entry.name))
    return found


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def result_files(out: Path) -> list[Path]:
    return sorted((out / "cells").rglob("*.json")) if (out / "cells").exists() else []


def leftovers(out: Path) -> list[Path]:
    """Half-written temporaries and lock files under ``out`` (none may stay after a run)."""
    cells = out / "cells"
    return sorted([*cells.rglob("*.tmp"), *cells.rglob("*.lock")]) if cells.exists() else []


def ray_worker_of(pid: int) -> int:
    """``pid`` or its nearest ancestor that is a Ray worker (process title ``ray::...``)."""
    current = pid
    while current > 1:
        cmdline = Path(f"/proc/{current}/cmdline").read_bytes()
        if cmdline.startswith(b"ray::"):
            return current
        current = int(Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()[1])
    raise AssertionError(f"process {pid} does not run inside a Ray worker")
