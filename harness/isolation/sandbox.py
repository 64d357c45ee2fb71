"""Worker processes for the untrusted roles: clean, tied to their parent, unprivileged.

- **Clean**: workers fork from a ``forkserver`` whose process imported modules only
  (torch, numpy, the harness), never a victim, a dataset or a result; so a worker's
  memory holds nothing but what it is sent, and starting one takes milliseconds.
- **Tied**: on Linux a worker gets ``PR_SET_PDEATHSIG`` = SIGKILL, so it dies with
  the process that started it.
- **Unprivileged where the OS allows**: started as root, a worker drops to
  ``nobody`` (uid/gid 65534) before it runs plugin code, so it cannot write ``out=``
  or the victim cache. Not as root, nothing can be dropped; the evaluator's digests
  (:mod:`harness.isolation.tripwire`) still detect what a worker changed.
"""

from __future__ import annotations

import ctypes
import importlib
import multiprocessing as mp
import os
import signal
import stat
import sys
import tempfile
from dataclasses import dataclass
from multiprocessing import forkserver
from pathlib import Path

NOBODY = 65534
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PRELOAD = ["numpy", "torch", "harness", "harness.isolation.client_worker",
           "harness.isolation.server_worker", "harness.isolation.preload"]
_CONTEXT: mp.context.BaseContext | None = None


PLUGIN_ENV = ("HARNESS_LOAD_PLUGINS", "HARNESS_DISABLE_PLUGINS")


@dataclass(frozen=True)
class PluginSetting:
    """The evaluator's plugin view, which a worker adopts before it loads plugins.

    The fork server started with the evaluator's path and environment of that moment;
    plugins installed or allowed since then must be visible to workers too.
    """

    sys_path: tuple[str, ...]
    env: tuple[tuple[str, str | None], ...]

    @classmethod
    def current(cls) -> PluginSetting:
        return cls(tuple(sys.path), tuple((k, os.environ.get(k)) for k in PLUGIN_ENV))

    def apply(self) -> None:
        sys.path[:] = list(self.sys_path)
        for key, value in self.env:
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        importlib.invalidate_caches()


@dataclass(frozen=True)
class SandboxReport:
    """What a worker could enforce, recorded in the cell's diagnostics."""

    uid: int
    dropped_privileges: bool
    parent_death_signal: bool
    reason: str = ""


def worker_context() -> mp.context.BaseContext:
    """The multiprocessing context workers start from (a forkserver preloading modules)."""
    global _CONTEXT  # one forkserver per evaluator process, started on first use
    if _CONTEXT is None:
        if "forkserver" in mp.get_all_start_methods():
            context = mp.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            secret = os.environ.pop("HARNESS_SECRET", None)  # the fork server never holds it
            try:
                forkserver.ensure_running()
            finally:
                if secret is not None:
                    os.environ["HARNESS_SECRET"] = secret
        else:  # pragma: no cover - non-Linux fallback, still a fresh interpreter
            context = mp.get_context("spawn")
        _CONTEXT = context
    return _CONTEXT


def _noop() -> None:
    """Target of :func:`warm_up`'s process."""


def warm_up() -> None:
    """Start the fork server and wait until its preload is done (an executor calls this
    during a worker's start-up, so that ``timeout=`` counts none of it)."""
    process = worker_context().Process(target=_noop)
    process.start()
    process.join()


def _prctl(option: int, value: int) -> bool:
    """``prctl(option, value)`` through ctypes; False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies (False elsewhere)."""
    return _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))


def protect_evaluator() -> bool:
    """Make this (the evaluator's) process non-dumpable, so a worker of the same user can
    neither attach a debugger to it nor read its ``/proc/<pid>/environ`` or memory
    (where ``HARNESS_SECRET`` lives); Linux only. Core dumps of the evaluator are lost."""
    return _prctl(PR_SET_DUMPABLE, 0)


def _world_readable(path: Path) -> bool:
    """Can ``nobody`` read ``path`` (every folder above it searchable by others)?"""
    path = path.resolve()
    for part in [path, *path.parents]:
        try:
            mode = part.stat().st_mode
        except OSError:
            return False
        need = stat.S_IXOTH if part.is_dir() else stat.S_IROTH
        if not mode & need:
            return False
    return True


def privileges_droppable() -> tuple[bool, str]:
    """Whether workers can drop to ``nobody`` here, and why not."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False, "not started as root: workers keep the user's permissions"
    for entry in sys.path:
        if entry and Path(entry).is_dir() and not _world_readable(Path(entry)):
            return False, (f"{entry} (on the Python path) is not readable by other users, so an "
                           "unprivileged worker could not import what it needs; install Python "
                           "and the harness where other users can read them to get prevention")
    return True, ""


def scratch_dir(owner_can_drop: bool) -> Path:
    """A private temporary folder for a worker (owned by ``nobody`` when it drops)."""
    path = Path(tempfile.mkdtemp(prefix="harness-worker-"))
    if owner_can_drop:
        os.chown(path, NOBODY, NOBODY)
    return path


def enter_sandbox(drop: bool, scratch: Path | None = None) -> SandboxReport:
    """Run first in a worker: tie it to its parent, then drop privileges if asked."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the evaluator handles Ctrl-C
    tied = set_parent_death_signal()
    if scratch is not None:
        os.environ["HOME"] = os.environ["TMPDIR"] = str(scratch)
        tempfile.tempdir = str(scratch)
    os.environ.pop("HARNESS_SECRET", None)
    if not drop:
        reason = "" if os.geteuid() != 0 else "privilege drop not requested"
        return SandboxReport(os.geteuid(), False, tied, reason or "not root")
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    return SandboxReport(os.geteuid(), True, tied)
