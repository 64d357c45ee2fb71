"""Landlock through ``ctypes``: which files, TCP ports, signals and sockets a worker may reach.

Landlock (Linux 5.13+) lets an unprivileged process restrict itself and every process
it starts, for good: the kernel refuses whatever the ruleset does not allow, even to
root. A worker confined here (:mod:`harness.isolation.confine`) handles every access
right its kernel's ABI knows, so anything it does not grant is denied:

- **files**: read (and execute) beneath the granted read-only paths, everything beneath
  its scratch folder, nothing else. Landlock only grants; to keep a protected path
  (``out=``, the cache, a key) unreachable below a granted folder, :func:`grant_plan`
  grants that folder's other children one by one, and only listing on the folders that
  lead to the protected path (names show; contents never do).
- **TCP** (ABI 4+): no bind, and connect only to the one port it is given.
- **scopes** (ABI 6+): no signal and no abstract Unix socket outside its own domain.
- **ptrace**: always; a confined process cannot trace, read the memory of
  (``/proc/<pid>/mem``, ``process_vm_readv``) or take descriptors from
  (``pidfd_getfd``) any process outside its domain.

See docs/design.md section 10 (the trust boundary).
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

CREATE_RULESET, ADD_RULE, RESTRICT_SELF = 444, 445, 446  # the same number on every arch
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH, RULE_NET_PORT = 1, 2

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_BITS_BY_ABI = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16, 6: 16, 7: 16}
"""Number of filesystem access rights each ABI handles (REFER 2, TRUNCATE 3, IOCTL_DEV 5)."""
FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | (1 << 14) | (1 << 15)
"""Rights that apply to a file itself (the rest are about folders)."""
READ_ONLY = EXECUTE | READ_FILE | READ_DIR
BIND_TCP, CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1


class LandlockError(OSError):
    """Landlock is missing or refused a ruleset."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI (0 where Landlock is missing or disabled)."""
    if not sys.platform.startswith("linux"):
        return 0
    version = _libc().syscall(CREATE_RULESET, None, ctypes.c_size_t(0),
                              ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(int(version), 0)


@dataclass(frozen=True)
class Grant:
    """One rule: ``access`` beneath ``path`` (a folder) or on it (a file)."""

    path: str
    access: int


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def grant_plan(read: tuple[str, ...], write: tuple[str, ...],
               protect: tuple[str, ...]) -> list[Grant]:
    """The rules granting ``read`` read-only and ``write`` read-write, with no path under
    ``protect`` reachable through either (see the module docstring)."""
    protected = [Path(p).resolve() for p in protect]
    grants: list[Grant] = []

    def add(path: Path, access: int) -> None:
        if not path.exists() or any(_inside(path, p) for p in protected):
            return
        if any(_inside(p, path) for p in protected):  # a protected path lies below
            grants.append(Grant(str(path), READ_DIR))
            try:
                children = sorted(path.iterdir())
            except OSError:
                return
            for child in children:
                add(child.resolve() if child.is_symlink() else child, access)
            return
        grants.append(Grant(str(path), access))

    for path in read:
        add(Path(path).resolve(), READ_ONLY)
    for path in write:
        add(Path(path).resolve(), (1 << 16) - 1)
    return grants


def restrict_self(grants: list[Grant], connect_port: int | None, abi: int) -> None:
    """Confine this thread (and what it starts) to ``grants``, no TCP bind and TCP connect
    only to ``connect_port``; needs ``no_new_privs`` (or CAP_SYS_ADMIN). Raises
    :class:`LandlockError` when the kernel refuses."""
    libc = _libc()
    fs_all = (1 << FS_BITS_BY_ABI[min(abi, 7)]) - 1
    net = BIND_TCP | CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0
    attr = struct.pack("=QQQ", fs_all, net, scoped)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    buffer = ctypes.create_string_buffer(attr[:size], size)
    ruleset = libc.syscall(CREATE_RULESET, buffer, ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise LandlockError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for grant in grants:
            _add_path_rule(libc, ruleset, grant, fs_all)
        if net and connect_port is not None:
            rule = ctypes.create_string_buffer(struct.pack("=QQ", CONNECT_TCP, connect_port), 16)
            if libc.syscall(ADD_RULE, ruleset, RULE_NET_PORT, rule, ctypes.c_uint32(0)) != 0:
                raise LandlockError(ctypes.get_errno(), "landlock_add_rule (port) failed")
        if libc.syscall(RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) != 0:
            raise LandlockError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)


def _add_path_rule(libc: ctypes.CDLL, ruleset: int, grant: Grant, fs_all: int) -> None:
    try:
        fd = os.open(grant.path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # gone since the plan was made: nothing to grant
    try:
        access = grant.access & fs_all
        if not os.path.isdir(grant.path):
            access &= FILE_ONLY
        if not access:
            return
        rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd), 12)
        if libc.syscall(ADD_RULE, ruleset, RULE_PATH_BENEATH, rule, ctypes.c_uint32(0)) != 0:
            raise LandlockError(ctypes.get_errno(), f"landlock_add_rule failed on {grant.path}")
    finally:
        os.close(fd)
