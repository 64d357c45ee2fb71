"""A seccomp filter for confined workers, built as classic BPF through ``ctypes``.

The filter refuses (``EPERM``) the system calls a stealing attack or a defense never
needs and an escape would: reading or steering other processes (``ptrace``,
``process_vm_readv``/``writev``, ``pidfd_getfd``, ``kcmp``), leaving or reshaping the
worker's namespaces (``unshare``, ``setns``, ``mount`` and the new mount API,
``chroot``), kernel interfaces that bypass other checks (``io_uring``, ``bpf``,
``userfaultfd``, ``perf_event_open``, ``open_by_handle_at``, keyrings), and machine-wide
changes (modules, reboot, clocks, swap). ``socket()`` is refused altogether, except an
``AF_INET``/``AF_INET6`` stream socket when the worker must reach an HTTP oracle: no
Unix socket can reach the evaluator's fork server, no packet leaves by UDP.

x86_64 only (the numbers below are its own); elsewhere :func:`install` reports it is not
available and the other mechanisms still hold. See docs/design.md section 10.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

AUDIT_ARCH_X86_64 = 0xC000003E
X32_BIT = 0x40000000
RET_ALLOW, RET_KILL_PROCESS = 0x7FFF0000, 0x80000000
RET_ERRNO = 0x00050000
LD_W_ABS, JEQ_K, JGE_K, AND_K, RET_K = 0x20, 0x15, 0x35, 0x54, 0x06
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SOCKET, AF_INET, AF_INET6, SOCK_STREAM = 41, 2, 10, 1
OFFSET_NR, OFFSET_ARCH, OFFSET_ARG0, OFFSET_ARG1 = 0, 4, 16, 24

DENIED = {
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_getfd": 438,
    "kcmp": 312, "process_madvise": 440, "mount": 165, "umount2": 166, "pivot_root": 155,
    "chroot": 161, "unshare": 272, "setns": 308, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_by_handle_at": 304, "name_to_handle_at": 303,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
    "kexec_file_load": 320, "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163,
    "iopl": 172, "ioperm": 173, "syslog": 103, "settimeofday": 164, "clock_settime": 227,
    "adjtimex": 159, "clock_adjtime": 305, "sethostname": 170, "setdomainname": 171,
    "quotactl": 179, "vhangup": 153, "uselib": 134,
}
"""x86_64 numbers of the refused system calls."""


def available() -> tuple[bool, str]:
    """Whether this machine's filter can be installed, and why not."""
    if platform.system() != "Linux":
        return False, "seccomp needs Linux"
    if platform.machine() not in ("x86_64", "AMD64"):
        return False, f"the filter's syscall table is x86_64's, not {platform.machine()}'s"
    return True, ""


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(allow_tcp: bool) -> list[bytes]:
    """The filter's instructions (``allow_tcp``: keep inet stream sockets for HTTP)."""
    deny = RET_ERRNO | errno.EPERM
    ops = [_op(LD_W_ABS, OFFSET_ARCH), _op(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
           _op(RET_K, RET_KILL_PROCESS), _op(LD_W_ABS, OFFSET_NR),
           _op(JGE_K, X32_BIT, 0, 1), _op(RET_K, deny)]
    for number in sorted(DENIED.values()):
        ops += [_op(JEQ_K, number, 0, 1), _op(RET_K, deny)]
    if allow_tcp:
        block = [_op(LD_W_ABS, OFFSET_ARG0), _op(JEQ_K, AF_INET, 1, 0),
                 _op(JEQ_K, AF_INET6, 0, 3), _op(LD_W_ABS, OFFSET_ARG1),
                 _op(AND_K, 0xF), _op(JEQ_K, SOCK_STREAM, 1, 0),
                 _op(RET_K, RET_ERRNO | errno.EACCES), _op(RET_K, RET_ALLOW)]
    else:
        block = [_op(RET_K, RET_ERRNO | errno.EACCES)]
    ops += [_op(JEQ_K, SOCKET, 0, len(block)), *block, _op(RET_K, RET_ALLOW)]
    return ops


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def install(allow_tcp: bool) -> None:
    """Install the filter on this thread (inherited by what it starts); needs
    ``no_new_privs``. Raises OSError when the kernel refuses."""
    ops = program(allow_tcp)
    code = ctypes.create_string_buffer(b"".join(ops), 8 * len(ops))
    prog = _Program(len(ops), ctypes.cast(code, ctypes.c_char_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"seccomp filter refused: {errno.errorcode.get(number, number)}")
