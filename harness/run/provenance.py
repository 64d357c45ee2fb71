"""What machine a result or a latency profile was measured on (provenance)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path


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
    import onnxruntime
    import torch

    from harness.serving.devices import gpu_name

    return MachineInfo(platform=platform.platform(), processor=_cpu_model(),
                       cpu_count=int(os.cpu_count() or 0), python=platform.python_version(),
                       torch=str(torch.__version__), onnxruntime=str(onnxruntime.__version__),
                       gpu=gpu_name(device))
