"""Pin the CPU kernels torch, oneDNN and MKL pick, so that training is the same on every
x86-64 processor with AVX2 (docs/design.md section 8).

Each library picks its vector kernels from the processor it finds: ATen's on AVX-512
machines (many Intel Xeons) run AVX-512 code, on AVX2-only ones (the AMD EPYCs the
committed board was built on) AVX2 code, and the float reductions then run in another
order, so a victim trains to other last bits and every exit threshold, latency draw and
metric downstream moves. Capping all three at AVX2 makes them run the same code on both.
Measured here (an AVX2 AMD EPYC, ``digits_cnn`` trained 5 epochs): the capped weights
are bit-identical to the uncapped ones, so nothing computed on such a machine changes;
each library at another level gives other weights (ATen without SIMD,
``ATEN_CPU_CAPABILITY=default``; oneDNN at SSE4.1; MKL at ``COMPATIBLE``): the kernel
choice, not the processor as such, moves the bits. Whether oneDNN's blocking (which
reads cache sizes) still differs across processors is not measured yet: no second
processor family was at hand.

:func:`pin_cpu_kernels` runs when this module is first imported (``harness`` imports it
before anything else), before any tensor is computed (the libraries read these variables
at their first kernel, not at import), and only sets what the user has not:
``ATEN_CPU_CAPABILITY=default`` (or any other value) set beforehand wins. Workers
inherit the variables. No torch import here: this module is the base layer.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping
from pathlib import Path

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
"""The variables and the AVX2 level each library is capped at."""
REQUIRED_FLAGS = ("avx2", "fma")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The processor's feature flags (empty where ``/proc/cpuinfo`` is not readable)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def pin_cpu_kernels(environ: MutableMapping[str, str] = os.environ,
                    flags: frozenset[str] | None = None,
                    machine: str | None = None) -> dict[str, str]:
    """Cap the kernels at AVX2 on an x86-64 processor that has it (a machine without AVX2,
    or another architecture, is left alone); returns the variables this call set."""
    if (machine or platform.machine()).lower() not in ("x86_64", "amd64"):
        return {}
    have = cpu_flags() if flags is None else flags
    if not all(f in have for f in REQUIRED_FLAGS):
        return {}
    added = {k: v for k, v in PINNED.items() if k not in environ}
    environ.update(added)
    return added


PINNED_HERE = pin_cpu_kernels()
"""What importing the harness set in this process (empty: nothing, or the user had)."""


def kernel_settings(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """What a result records of the kernel choice: each variable's value ('' if unset)."""
    return {k: environ.get(k, "") for k in PINNED}
