"""Built-in serving backends: eager PyTorch and ONNX Runtime, both with true early exit."""

from __future__ import annotations

from harness.protocol import ServingBackend
from victims.serving.onnx_backend import OnnxBackend, OnnxServedModel
from victims.serving.torch_backend import TorchBackend, TorchServedModel

BUILTIN_BACKENDS: tuple[type[ServingBackend], ...] = (TorchBackend, OnnxBackend)

__all__ = ["BUILTIN_BACKENDS", "OnnxBackend", "OnnxServedModel", "TorchBackend",
           "TorchServedModel"]
