"""Worker processes for the untrusted roles: clean, tied to their parent, confined.

- **Clean**: workers fork from a ``forkserver`` whose process imported modules only
  (torch, numpy, the harness), never a victim, a dataset, a result or a third-party
  plugin; so a worker's memory holds nothing but what it is sent, and starting one takes
  milliseconds.
- **Tied**: a worker is in its evaluator's process group (one started by an inherited
  fork server joins it first), so stopping a cell's group stops its workers; a worker's
  namespace init gets ``PR_SET_PDEATHSIG`` = SIGKILL and dies with the worker.
- **Confined** by the kernel before it imports a plugin (:mod:`harness.isolation.confine`):
  :func:`worker_confinement` says what it may reach, namely the Python installation
  (read-only), its own scratch folder, the system libraries, and never ``out=``, the victim
  cache or a key. Started as root where other users can read Python, it also drops to
  ``nobody`` (uid/gid 65534). The evaluator's digests
  (:mod:`harness.isolation.tripwire`) still detect what a worker changed.
"""

from __future__ import annotations

import ctypes
import importlib
import multiprocessing as mp
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from multiprocessing import forkserver, resource_tracker
from multiprocessing.context import ForkServerContext, ForkServerProcess
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.isolation.confine import NOBODY, Confinement
from harness.isolation.wire import Message, send

PR_SET_DUMPABLE = 4
PRELOAD = ["numpy", "torch", "harness", "harness.isolation.client_worker",
           "harness.isolation.server_worker", "harness.isolation.preload",
           "harness.run.executors.worker"]
_CONTEXT: mp.context.BaseContext | None = None


PLUGIN_ENV = ("HARNESS_LOAD_PLUGINS", "HARNESS_DISABLE_PLUGINS", "HARNESS_TRUSTED_PLUGINS")


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


class _GroupedProcess(ForkServerProcess):
    """A worker started by an inherited fork server: it first joins the group of the process
    that asked for it, so stopping that group (a cell's timeout, end or its runner's
    death) stops the worker too, as if the requester had started it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._requester_group = os.getpgid(0)

    def run(self) -> None:
        os.setpgid(0, self._requester_group)
        super().run()


class _InheritedServerContext(ForkServerContext):
    Process = _GroupedProcess  # type: ignore[assignment]


def _adopt_inherited_server() -> mp.context.BaseContext | None:
    """The context of the fork server that forked this process, if it still serves it.

    A process executor's cell worker is forked from the runner's fork server, which holds
    modules only, as this one would. Starting workers from it saves a fresh interpreter
    and torch's import (about 3 s) per cell. Python has no public way to adopt a server:
    a forked child knows its address and holds its alive pipe, but ``ensure_running``
    would start another. A probe worker checks that it works; any failure (another
    Python, another layout) returns None and a new server is started as before.
    """
    server = forkserver._forkserver
    if (getattr(server, "_forkserver_pid", 0) is not None
            or not getattr(server, "_forkserver_address", None)
            or getattr(server, "_forkserver_alive_fd", None) is None):
        return None
    server.ensure_running = resource_tracker.ensure_running  # it runs: never start another
    context = _InheritedServerContext()
    try:
        probe = context.Process(target=_noop)
        probe.start()
        probe.join()
        if probe.exitcode == 0:
            return context
    except Exception:  # any failure: fall back to a server of our own
        pass
    del server.ensure_running
    return None


def worker_context() -> mp.context.BaseContext:
    """The multiprocessing context workers start from (a forkserver preloading modules);
    the process executor's cell workers start from it too, and their own workers from
    the same server (:func:`_adopt_inherited_server`)."""
    global _CONTEXT  # one forkserver per evaluator process, started on first use
    if _CONTEXT is None and (inherited := _adopt_inherited_server()) is not None:
        _CONTEXT = inherited
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
    if not _can_set_ids():
        return False, "root without CAP_SETUID/CAP_SETGID: the uid cannot change"
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


def _can_set_ids() -> bool:
    """Does this process hold CAP_SETUID and CAP_SETGID (bits 7 and 6)?"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16) & 0xC0 == 0xC0
    except (OSError, ValueError):
        pass
    return False


SYSTEM_READ = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/etc/ld.so.cache",
               "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/hosts",
               "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf", "/etc/protocols",
               "/etc/services", "/etc/passwd", "/etc/group", "/proc", "/sys/devices/system",
               "/sys/fs/cgroup", "/dev/zero", "/dev/urandom", "/dev/random")
"""What a confined worker reads besides Python: shared libraries and name-service files,
and ``/proc`` (another process's memory, environment or descriptors there stay closed to
it: the kernel's ptrace checks and Landlock see to that)."""
SYSTEM_WRITE = ("/dev/null", "/dev/full")


def python_paths() -> tuple[str, ...]:
    """The Python installation: prefixes, the import path (but not the working folder
    that '' names), and the folders of every imported top-level package (editable
    installs live outside the import path)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(entry for entry in sys.path if entry)  # not '' (the working folder)
    for name, module in list(sys.modules.items()):
        if "." in name or module is None:
            continue
        paths.update(str(p) for p in getattr(module, "__path__", None) or ())
        where = getattr(module, "__file__", None)
        if where and not getattr(module, "__path__", None):
            paths.add(str(where))
    return tuple(sorted(paths))


def worker_confinement(scratch: Path, protect: tuple[Path | None, ...], *, drop: bool,
                       connect_port: int | None = None, memory_bytes: int | None = None,
                       cpu_seconds: int | None = None) -> Confinement:
    """What a plugin worker may reach: Python and the system read-only, ``scratch``
    read-write, nothing under ``protect`` (``out=``, the cache, keys) in any case."""
    return Confinement(read=python_paths() + SYSTEM_READ, write=(str(scratch), *SYSTEM_WRITE),
                       protect=tuple(str(p) for p in protect if p is not None),
                       connect_port=connect_port, memory_bytes=memory_bytes,
                       cpu_seconds=cpu_seconds, drop_to_nobody=drop)


def use_scratch(scratch: Path) -> None:
    """Point ``HOME``, ``TMPDIR`` and :mod:`tempfile` at the worker's scratch folder."""
    os.environ["HOME"] = os.environ["TMPDIR"] = str(scratch)
    tempfile.tempdir = str(scratch)
    os.environ.pop("HARNESS_SECRET", None)


def check_apart(protect: dict[str, Path | None]) -> None:
    """Refuse a protected folder (``out=``, ``cache_dir=``) that holds the Python
    installation or an imported package: a confined worker could not import from it."""
    imported = [(path, Path(path).resolve()) for path in python_paths()]
    for key, folder in protect.items():
        if folder is None:
            continue
        root = Path(folder).resolve()
        for path, resolved in imported:
            if resolved == root or root in resolved.parents:
                raise ConfigError(
                    f"{key}={folder} holds {path}, which the plugin workers import from; "
                    f"workers may never read {key}, so choose a folder that does not contain "
                    "the Python installation or the harness (e.g. a results/ subfolder)")


def stop_worker(conn: Any, process: Any, farewell: Message | None = None) -> None:
    """Say ``farewell`` (a wire message) if the worker still listens, give it 5 s to end,
    then kill it; close the connection."""
    if farewell is not None:
        try:
            send(conn, farewell)
        except (OSError, ValueError):
            pass
    process.join(timeout=5)
    if process.is_alive():
        process.kill()
        process.join()
    conn.close()


@dataclass
class ConfinedWorker:
    """A started plugin worker: its connection, process and scratch folder."""

    conn: Any
    process: Any
    scratch: Path

    def stop(self, farewell: Message | None = None) -> None:
        """:func:`stop_worker`, then remove its scratch folder."""
        stop_worker(self.conn, self.process, farewell)
        shutil.rmtree(self.scratch, ignore_errors=True)


def start_confined(target: Any, args: tuple[Any, ...], protect: tuple[Path | None, ...], *,
                   memory_bytes: int, cpu_seconds: int) -> ConfinedWorker:
    """Start ``target(conn, PluginSetting, *args, Confinement, scratch)`` in a worker that
    confines itself before it imports a plugin (its own scratch, never ``protect``)."""
    drop, _ = privileges_droppable()
    scratch = scratch_dir(drop)
    confinement = worker_confinement(scratch, protect, drop=drop, memory_bytes=memory_bytes,
                                     cpu_seconds=cpu_seconds)
    context = worker_context()
    conn, child = context.Pipe()
    process = context.Process(target=target, daemon=True,
                              args=(child, PluginSetting.current(), *args, confinement,
                                    str(scratch)))
    process.start()
    child.close()
    return ConfinedWorker(conn, process, scratch)
