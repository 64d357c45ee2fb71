"""The ``onnx`` serving backend: one ONNX Runtime session per stage, true early exit.

Each stage (block ``k`` + head ``k``) is exported once to ONNX and cached under
``<cache_dir>/onnx/<victim>-<weights_hash>/``, or read from a user-given ``model_dir``.
A cached file that does not load or does not reproduce the victim is re-exported once;
a user-given one is an error. At load time the stages are checked against the torch
model on a few real and random inputs, batched and one sample at a time.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort
import torch

from harness.errors import CacheError, ConfigError
from harness.model import MultiExitNet
from harness.params import Interval
from harness.protocol import ServingBackend, TrainedVictim
from harness.serving.devices import resolve_device
from victims.serving.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAMES,
    cached_stages,
    export_dir,
    export_stages,
    stage_file,
)
from victims.serving.staged import SERVING_CONSTRAINTS, StagedServedModel, softmax64


class OnnxServedModel(StagedServedModel):
    """A victim served by ONNX Runtime, one ``InferenceSession`` per stage.

    With ``io_binding`` the hidden state stays in the session's device memory between
    stages (used on cuda); otherwise it passes through host numpy arrays (fastest on cpu).
    """

    backend = "onnx"

    def __init__(self, sessions: list[ort.InferenceSession], io_binding: bool,
                 **kwargs: Any) -> None:
        super().__init__(num_exits=len(sessions), **kwargs)
        self.sessions = sessions
        self.io_binding = io_binding
        self.providers = tuple(sessions[0].get_providers())
        self._ort_device = "cuda" if self.device == "cuda" else "cpu"

    def _state(self, x1: np.ndarray) -> Any:
        if self.io_binding:
            return ort.OrtValue.ortvalue_from_numpy(x1, self._ort_device, 0)
        return x1

    def _stage(self, k: int, h: Any) -> tuple[Any, np.ndarray]:
        sess = self.sessions[k]
        if not self.io_binding:
            h_out, logits = sess.run(None, {INPUT_NAME: h})
            return h_out, logits
        if isinstance(h, np.ndarray):  # rows joined on the host (a staged computation)
            h = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(h), self._ort_device, 0)
        binding = sess.io_binding()
        binding.bind_ortvalue_input(INPUT_NAME, h)
        binding.bind_output(OUTPUT_NAMES[0], self._ort_device)
        binding.bind_output(OUTPUT_NAMES[1], "cpu")
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()
        h_out, logits = binding.get_outputs()
        return h_out, logits.numpy()

    def _split(self, h: Any, n: int) -> list[Any]:
        rows = h.numpy() if isinstance(h, ort.OrtValue) else h
        return [rows[i:i + 1] for i in range(n)]

    def _batch_logits(self, x: np.ndarray) -> list[np.ndarray]:
        h, outs = x, []
        for sess in self.sessions:
            h, logits = sess.run(None, {INPUT_NAME: h})
            outs.append(logits)
        return outs


class OnnxBackend(ServingBackend):
    """Serve a victim with ONNX Runtime (CPU, or CUDA when onnxruntime-gpu provides it).

    ``intra_op_num_threads``: threads per session; ``model_dir``: read stage files
    ``stage<k>.onnx`` from this folder instead of exporting; ``verify_samples`` and
    ``atol``: load-time check against torch (max probability difference);
    ``io_binding``: keep hidden states on the device (None = on cuda only).
    ``warmup``, ``aggregate``, ``batch_size`` as for the torch backend.
    """

    name = "onnx"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **SERVING_CONSTRAINTS,
        "intra_op_num_threads": [Interval("int", 1, 1024)],
        "opset": [Interval("int", 9, 100)],
        "model_dir": [str, None],
        "verify_samples": [Interval("int", 1, 100_000)],
        "atol": [Interval("real", 0, 1, closed="right")],
        "io_binding": [bool, None],
    }

    def __init__(self, intra_op_num_threads: int = 1, warmup: int = 3,
                 aggregate: str = "median", batch_size: int = 512, opset: int = 17,
                 model_dir: str | None = None, verify_samples: int = 8, atol: float = 1e-4,
                 io_binding: bool | None = None) -> None:
        self.intra_op_num_threads = intra_op_num_threads
        self.warmup = warmup
        self.aggregate = aggregate
        self.batch_size = batch_size
        self.opset = opset
        self.model_dir = model_dir
        self.verify_samples = verify_samples
        self.atol = atol
        self.io_binding = io_binding

    def load(self, victim: TrainedVictim, device: str, cache_dir: Path) -> OnnxServedModel:
        """Export (or reuse) the victim's stages and open one session per stage."""
        self.validate()
        device = self._ort_device(resolve_device(device))
        net = copy.deepcopy(victim.model).to("cpu").eval()
        meta = {"victim": victim.name, "weights_hash": victim.weights_hash}
        if self.model_dir is not None:
            served = self._open(victim, net, _given_paths(Path(self.model_dir), net), device)
            self._verify(served, victim, net, where=f"model_dir={self.model_dir!r}")
            return served
        directory = export_dir(Path(cache_dir), victim.name, victim.weights_hash)
        paths = cached_stages(directory, net.num_exits, meta)
        if paths is not None:
            try:
                served = self._open(victim, net, paths, device)
                self._verify(served, victim, net, where=f"the cache {directory}")
                return served
            except (CacheError, ConfigError) as exc:
                warnings.warn(f"backend=onnx: re-exporting the cached stages: {exc}",
                              RuntimeWarning, stacklevel=2)
        paths = export_stages(net, directory, self.opset, meta)
        served = self._open(victim, net, paths, device)
        self._verify(served, victim, net, where=f"a fresh export in {directory}")
        return served

    @staticmethod
    def _ort_device(device: str) -> str:
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            warnings.warn(
                "backend=onnx, device=cuda: this onnxruntime build has no "
                f"CUDAExecutionProvider (providers: {ort.get_available_providers()}); serving "
                "on cpu instead. Install onnxruntime-gpu to serve ONNX on the GPU.",
                RuntimeWarning, stacklevel=3)
            return "cpu"
        return device

    def _open(self, victim: TrainedVictim, net: MultiExitNet, paths: list[Path],
              device: str) -> OnnxServedModel:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_num_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            providers = ["CUDAExecutionProvider", *providers]
        sessions = []
        for path in paths:
            try:
                sessions.append(ort.InferenceSession(str(path), options, providers=providers))
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise CacheError(
                    f"backend=onnx: cannot load ONNX stage file {path} ({type(exc).__name__}: "
                    f"{str(exc).strip()[:300]}); it is corrupt or not an ONNX model") from exc
        io_binding = device == "cuda" if self.io_binding is None else bool(self.io_binding)
        return OnnxServedModel(
            sessions, io_binding, cost_fraction=victim.model.cost_fraction,
            input_shape=net.input_shape, num_classes=net.num_classes, device=device,
            warmup=self.warmup, aggregate=self.aggregate, batch_size=self.batch_size)

    def _verify(self, served: OnnxServedModel, victim: TrainedVictim, net: MultiExitNet,
                where: str) -> None:
        """Raise a :class:`ConfigError` when the stages do not reproduce ``net``."""
        x = _verification_inputs(victim, net, self.verify_samples)
        with torch.no_grad():
            want = [softmax64(o.numpy()) for o in net(torch.from_numpy(x))]
        try:
            got = served.exit_probs(x)
            single = served.serve(x[:2], exits=np.full(min(2, len(x)), net.num_exits - 1))
        except Exception as exc:
            raise ConfigError(f"backend=onnx: the ONNX stages from {where} fail on this "
                              f"victim's inputs ({type(exc).__name__}: {exc})") from exc
        diffs = [float(np.abs(g - w).max()) for g, w in zip(got, want, strict=True)]
        diffs.append(float(np.abs(single.probs - want[-1][:2]).max()))
        worst = int(np.argmax(diffs))
        if diffs[worst] > self.atol:
            what = "batch-size-1 final exit" if worst == len(want) else f"exit {worst}"
            raise ConfigError(
                f"backend=onnx: the ONNX stages from {where} do not match victim "
                f"{victim.name!r}: {what} differs from torch by {diffs[worst]:.3g} in "
                f"probability (allowed atol={self.atol:g}); they belong to another model or "
                "the exporter mistranslated an op. Use backend=torch, or raise atol.")


def _given_paths(directory: Path, net: MultiExitNet) -> list[Path]:
    paths = [stage_file(directory, k) for k in range(net.num_exits)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise CacheError(f"backend=onnx: model_dir {directory} lacks {missing}; it must hold "
                         f"stage0.onnx .. stage{net.num_exits - 1}.onnx, one per exit (or "
                         "leave model_dir unset to export into the cache)")
    return paths


def _verification_inputs(victim: TrainedVictim, net: MultiExitNet, n: int) -> np.ndarray:
    """Up to ``n`` real test inputs plus ``n`` uniform ones in the input range."""
    lo, hi = victim.data.input_range
    rng = np.random.default_rng(0)
    rand = rng.uniform(lo, hi, size=(n, *net.input_shape))
    real = np.asarray(victim.data.test.x[:n])
    return np.concatenate([real, rand]).astype(np.float32)
