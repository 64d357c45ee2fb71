"""Device resolution: ``cpu``, ``cuda`` or ``auto`` to a concrete device string."""

from __future__ import annotations

import warnings

import torch

from harness.errors import ConfigError

DEVICE_CHOICES = ("cpu", "cuda", "auto")


def cuda_available() -> bool:
    """Whether torch sees at least one CUDA device."""
    return bool(torch.cuda.is_available()) and torch.cuda.device_count() > 0


def resolve_device(device: str) -> str:
    """Return ``cpu`` or ``cuda`` for ``device`` in ``cpu|cuda|auto``.

    ``cuda`` without a visible GPU is an error; ``auto`` falls back to ``cpu`` with a
    warning so results never silently claim a GPU.
    """
    if not isinstance(device, str) or device.lower() not in DEVICE_CHOICES:
        raise ConfigError(
            f"device={device!r} is not supported; choose one of {list(DEVICE_CHOICES)} "
            "('auto' uses cuda when a GPU is visible, else cpu)")
    device = device.lower()
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        if not cuda_available():
            raise ConfigError(
                "device='cuda' was requested but no CUDA device is visible to torch "
                f"(torch {torch.__version__}, torch.cuda.is_available() is False); "
                "use device='cpu', or device='auto' to fall back to cpu")
        return "cuda"
    if cuda_available():
        return "cuda"
    warnings.warn("device='auto': no CUDA device is visible, falling back to device='cpu'",
                  RuntimeWarning, stacklevel=2)
    return "cpu"
