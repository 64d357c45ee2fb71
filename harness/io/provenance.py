"""Provenance of results and profiles: the machine, the package versions, the git commit."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

from harness.kernels import kernel_settings
from harness.version import __version__

HASHED_PACKAGES = ("torch", "numpy", "scikit-learn", "onnxruntime", "ruptures", "scipy")
"""Packages whose versions enter every cell's config hash."""


@dataclass(frozen=True)
class MachineInfo:
    """Where a profile was measured."""

    platform: str
    processor: str
    cpu_count: int
    python: str
    torch: str
    onnxruntime: str
    gpu: str | None
    cpu_kernels: str = ""
    """torch's kernel level and the pinned variables (:mod:`harness.kernels`)."""


def _cpu_model() -> str:
    name = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name or platform.machine()


def machine_info(device: str = "cpu") -> MachineInfo:
    """Describe this machine (and the GPU when ``device`` is cuda)."""
    return MachineInfo(platform=platform.platform(), processor=_cpu_model(),
                       cpu_count=int(os.cpu_count() or 0), python=platform.python_version(),
                       torch=str(torch.__version__), onnxruntime=_version("onnxruntime"),
                       gpu=gpu_name(device), cpu_kernels=_kernels())


def _kernels() -> str:
    settings = ", ".join(f"{k}={v or 'unset'}" for k, v in kernel_settings().items())
    return f"{torch.backends.cpu.get_cpu_capability()} ({settings})"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def gpu_name(device: str) -> str | None:
    """Name of the GPU behind ``device`` (None on cpu, or when no GPU is visible)."""
    if device != "cuda" or not torch.cuda.is_available():
        return None
    return str(torch.cuda.get_device_name(torch.cuda.current_device()))


def package_versions() -> dict[str, str]:
    return {"harness": __version__, **{pkg: _version(pkg) for pkg in HASHED_PACKAGES}}


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=cwd, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None
