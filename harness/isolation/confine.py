"""Kernel confinement of a worker that runs plugin code (client, server).

:func:`run_confined` is a worker's entry point. It moves the worker into new PID, IPC
and (without HTTP) network namespaces and forks the process that runs the plugin code
as the namespace's init: when that process ends, the kernel kills everything it started,
detached or not, and nothing outside the namespace can be named by a PID. Before any
plugin code runs, the init then drops to ``nobody`` where it can, drops every
capability, sets ``no_new_privs``, applies rlimits (memory, CPU time, no core files),
Landlock (:mod:`harness.isolation.landlock`) and seccomp
(:mod:`harness.isolation.seccomp`).

A mechanism the kernel lacks is skipped, and the :class:`ConfinementReport` says which;
its :attr:`~ConfinementReport.level` is recorded per cell and is part of the board's
group key (docs/design.md section 10).
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.isolation import landlock, seccomp

CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = (0x08000000, 0x10000000,
                                                           0x20000000, 0x40000000)
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
NOBODY = 65534
MECHANISMS = ("pid_namespace", "network", "capabilities", "landlock", "seccomp", "rlimits")
FULL = "kernel"


@dataclass(frozen=True)
class Confinement:
    """What a worker may reach: ``read`` (read-only) and ``write`` paths, never anything
    under ``protect``; TCP connect to ``connect_port`` only (None: no network at all);
    ``memory_bytes`` of data and ``cpu_seconds`` of CPU time (None: no limit)."""

    read: tuple[str, ...]
    write: tuple[str, ...]
    protect: tuple[str, ...]
    connect_port: int | None = None
    memory_bytes: int | None = None
    cpu_seconds: int | None = None
    drop_to_nobody: bool = False


@dataclass(frozen=True)
class ConfinementReport:
    """Which mechanisms hold in a worker (``applied``) and why the others do not."""

    applied: tuple[str, ...]
    missing: dict[str, str] = field(default_factory=dict)
    uid: int = -1
    landlock_abi: int = 0

    @property
    def level(self) -> str:
        """``kernel`` when every mechanism holds, else ``partial:-<missing>,...``."""
        return FULL if not self.missing else "partial:-" + ",-".join(sorted(self.missing))

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "applied": list(self.applied), "missing": dict(self.missing),
                "uid": self.uid, "landlock_abi": self.landlock_abi}


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, a: int = 0, b: int = 0) -> bool:
    return _libc().prctl(option, a, b, 0, 0) == 0


def _unshare(flags: int) -> str:
    """Enter new namespaces; '' on success, else why not (retries in a user namespace)."""
    libc = _libc()
    if libc.unshare(flags) == 0:
        return ""
    if libc.unshare(flags | CLONE_NEWUSER) == 0:
        return ""
    return os.strerror(ctypes.get_errno())


def _drop_capabilities() -> str:
    """Empty the bounding, ambient, effective, permitted and inheritable sets."""
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        _prctl(PR_CAPBSET_DROP, cap)  # fails without CAP_SETPCAP, when nothing is held
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()
    if _libc().capset(header, data) != 0:
        return f"capset failed: {os.strerror(ctypes.get_errno())}"
    return ""


def _limits(memory_bytes: int | None, cpu_seconds: int | None) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
    if cpu_seconds is not None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))


def _drop_to_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def confine(policy: Confinement, namespaces: dict[str, str]) -> ConfinementReport:
    """Apply every mechanism this kernel has to the calling (single-threaded) process."""
    missing = {k: v for k, v in namespaces.items() if v}
    if policy.drop_to_nobody:
        _drop_to_nobody()
    reason = _drop_capabilities()
    if reason:
        missing["capabilities"] = reason
    if not _prctl(PR_SET_NO_NEW_PRIVS, 1):
        missing["capabilities"] = "no_new_privs refused"
    try:
        _limits(policy.memory_bytes, policy.cpu_seconds)
    except (OSError, ValueError) as exc:
        missing["rlimits"] = str(exc)
    abi = landlock.abi_version()
    if abi == 0:
        missing["landlock"] = "the kernel has no Landlock (Linux 5.13+, enabled in the LSM list)"
    else:
        try:
            grants = landlock.grant_plan(policy.read, policy.write, policy.protect)
            landlock.restrict_self(grants, policy.connect_port, abi)
        except OSError as exc:
            missing["landlock"] = str(exc)
        if abi < 6:
            missing.setdefault("landlock", f"ABI {abi} cannot scope signals")
    ok, why = seccomp.available()
    if ok:
        try:
            seccomp.install(allow_tcp=policy.connect_port is not None)
        except OSError as exc:
            missing["seccomp"] = str(exc)
    else:
        missing["seccomp"] = why
    if policy.connect_port is not None and ("seccomp" in missing or abi < 4):
        missing["network"] = "HTTP needs TCP; without seccomp and Landlock ABI 4+ it is open"
    applied = tuple(m for m in MECHANISMS if m not in missing)
    return ConfinementReport(applied, missing, os.geteuid(), abi)


def _namespace_flags(policy: Confinement) -> int:
    flags = CLONE_NEWPID | CLONE_NEWIPC
    return flags if policy.connect_port is not None else flags | CLONE_NEWNET


def _exit_like(status: int) -> None:
    """End this process the way its child ended (same code, or same signal)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def run_confined(policy: Confinement, target: Callable[..., None], *args: Any,
                 prepare: Callable[..., Any] | None = None) -> None:
    """Run ``target(*args, report)`` as init of new namespaces, fully confined; with
    ``prepare``, ``target(*args, prepare(*args), report)``: ``prepare`` runs in the
    namespaces but before the confinement, so it must run trusted code only.

    This (outer) process only waits for it and exits as it did; the evaluator's handle
    (a ``multiprocessing`` process) sees the outer one, and killing it kills the init
    (parent-death signal), which takes the whole namespace with it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the evaluator handles Ctrl-C
    why = _unshare(_namespace_flags(policy)) if sys.platform.startswith("linux") else "not Linux"
    namespaces = {"pid_namespace": why} if why else {}
    if why and policy.connect_port is None:
        namespaces["network"] = why
    if not why:
        child = os.fork()
        if child:
            for arg in args:  # the init holds the pipes: EOF when it ends
                if hasattr(arg, "close") and hasattr(arg, "poll"):
                    arg.close()
            _, status = os.waitpid(child, 0)
            _exit_like(status)
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if why:  # no namespace: confined in place, as the multiprocessing process itself
        _run(policy, namespaces, target, args, prepare)
        return
    code = 0
    try:
        _run(policy, namespaces, target, args, prepare)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run(policy: Confinement, namespaces: dict[str, str], target: Callable[..., None],
         args: tuple[Any, ...], prepare: Callable[..., Any] | None) -> None:
    if prepare is None:
        target(*args, confine(policy, namespaces))
        return
    prepared = prepare(*args)
    target(*args, prepared, confine(policy, namespaces))
