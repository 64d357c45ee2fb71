from __future__ import annotations

import warnings

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.io.provenance import gpu_name
from harness.serving.devices import cuda_available, resolve_device
from victims.serving import OnnxBackend, TorchBackend

no_gpu = pytest.mark.skipif(cuda_available(), reason="needs a machine without a CUDA device")


def test_cpu_is_cpu():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_device("cpu") == "cpu"
    assert gpu_name("cpu") is None


def test_unknown_device_lists_choices():
    with pytest.raises(ConfigError, match=r"device='tpu'.*\['cpu', 'cuda', 'auto'\]"):
        resolve_device("tpu")


@no_gpu
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"no CUDA device is visible.*device='cpu'"):
        resolve_device("cuda")


@no_gpu
def test_auto_falls_back_to_cpu_with_warning():
    with pytest.warns(RuntimeWarning, match="falling back to device='cpu'"):
        assert resolve_device("auto") == "cpu"


@no_gpu
@pytest.mark.parametrize("backend", [TorchBackend, OnnxBackend])
def test_backends_refuse_cuda_without_gpu(victim, tmp_path, backend):
    with pytest.raises(ConfigError, match="no CUDA device is visible"):
        backend().load(victim, "cuda", tmp_path)


@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", [TorchBackend, OnnxBackend])
def test_cuda_serving_matches_cpu(victim, tmp_path, backend):
    x = victim.data.test.x[:20]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # onnxruntime without CUDA falls back
        gpu = backend().load(victim, "cuda", tmp_path)
    cpu = backend().load(victim, "cpu", tmp_path)
    a, b = gpu.serve(x, strategy=victim.strategy), cpu.serve(x, strategy=victim.strategy)
    np.testing.assert_array_equal(a.exits, b.exits)
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-4)
