"""benchmarks/gpu_check.py, the one prepared GPU script, smoke-tested on the CPU.

The GPU run happens on a lent machine; here the script must run end to end with
``--device cpu`` and small sizes, write every section, skip the ONNX CUDA part without
failing, and refuse ``--device cuda`` clearly when torch sees no GPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import gpu_check
from benchmarks.latency_corpus import load_corpus
from harness.serving.devices import cuda_available

SMALL = ["--samples-per-exit", "8", "--train-steps", "1", "--width", "8"]
CELL = ["--budget", "60", "--attack-epochs", "1", "--attack-finetune-epochs", "0"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One victim cache for the module: digits_cnn is trained once."""
    return tmp_path_factory.mktemp("cache")


def _sections(report: dict[str, Any]) -> None:
    for key in ("environment", "settings", "victim", "torch_serving", "onnx_serving",
                "latency_trace", "attack_cell", "wall_s"):
        assert key in report, key


@pytest.mark.integration
def test_cpu_run_writes_every_section(tmp_path: Path, cache: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gpu_check.json"
    rc = gpu_check.main(["--device", "cpu", "--json", str(out), *SMALL, *CELL,
                         "--cache-dir", str(cache)])
    assert rc == 0
    report = json.loads(out.read_text())
    _sections(report)
    assert report["victim"]["input_shape"] == [3, 32, 32]
    for name in ("torch_serving", "onnx_serving"):
        sec = report[name]
        assert sec["status"] == "ok", sec
        assert sec["device"] == "cpu" and sec["timer"] == "perf_counter_ns"
        assert len(sec["per_exit"]) == report["victim"]["num_exits"]
        for row in sec["per_exit"]:
            assert 0 < row["median_us"] <= row["p90_us"]
            assert row["backend_median_us"] > 0
        assert 0 <= sec["bayes_exit_accuracy"] <= 1
    cell = report["attack_cell"]
    assert cell["status"] == "ok", cell
    assert cell["victim"] == "digits_cnn" and cell["timing"] == "live"
    for key in ("bayes_exit_accuracy", "query_bayes_exit_accuracy", "exit_estimation_accuracy"):
        assert 0 <= cell[key] <= 1, key
    served = cell["served_victim"]
    assert served["same_weights_as_cell"] is True
    assert [r["exit"] for r in served["per_exit"]] == [0, 1, 2, 3]
    assert all(r["p90_us"] >= r["median_us"] > 0 for r in served["per_exit"])
    printed = capsys.readouterr().out
    assert "perf_counter_ns" in printed and "exit_estimation_accuracy" in printed
    _check_traces(report, tmp_path)


def _check_traces(report: dict[str, Any], directory: Path) -> None:
    """The serving latencies came back as a corpus plan the calibration can read."""
    section = report["latency_trace"]
    assert section["status"] == "ok" and section["plan"] == "cpu_check", section
    traces = load_corpus(("cpu_check",), directory=directory)
    assert [t["name"] for t in traces] == ["cpu_check_torch", "cpu_check_onnx"]
    k = report["victim"]["num_exits"]
    for trace, backend in zip(traces, ("torch", "onnx"), strict=True):
        assert trace["backend"] == backend and trace["device"] == "cpu"
        assert trace["num_exits"] == k and len(trace["cost_fraction"]) == k
        assert trace["n"] == len(trace["exits"]) == len(trace["latency_s"]) == 8 * k
        assert np.array_equal(np.bincount(trace["exits"]), np.full(k, 8))
        assert np.all(trace["latency_s"] > 0) and 0 <= trace["bayes_optimal"] <= 1
        assert "steal_pct" in trace["load"] and isinstance(trace["quiet"], bool)
        served = report[f"{backend}_serving"]["per_exit"]
        np.testing.assert_allclose(trace["latency_s"][trace["exits"] == 1] * 1e6,
                                   served[1]["latency_us"], rtol=1e-5)


def test_onnx_cuda_without_provider_is_a_skip(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    args = gpu_check.parser().parse_args(["--device", "cpu", *SMALL])
    victim = gpu_check.cifar_victim(args, "cpu")
    sec = gpu_check.onnx_serving(victim, args, "cuda", tmp_path)
    assert sec["status"] == "skipped"
    assert "CUDAExecutionProvider" in sec["reason"] and "onnxruntime-gpu" in sec["reason"]


def test_skipped_onnx_still_exits_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_check, "onnx_serving",
                        lambda *a: {"status": "skipped", "reason": "no CUDA provider"})
    out = tmp_path / "r.json"
    assert gpu_check.main(["--device", "cpu", "--json", str(out), *SMALL, "--skip-cell"]) == 0
    report = json.loads(out.read_text())
    _sections(report)
    assert report["onnx_serving"] == {"status": "skipped", "reason": "no CUDA provider",
                                      "seconds": report["onnx_serving"]["seconds"]}


def test_failed_section_exits_nonzero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(gpu_check, "onnx_serving", broken)
    out = tmp_path / "r.json"
    assert gpu_check.main(["--device", "cpu", "--json", str(out), *SMALL, "--skip-cell"]) == 1
    assert json.loads(out.read_text())["onnx_serving"]["reason"] == "RuntimeError: boom"


@pytest.mark.skipif(cuda_available(), reason="a GPU is visible")
def test_cuda_asked_without_gpu_is_a_clear_error(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    assert gpu_check.main(["--device", "cuda", "--json", str(out)]) == 2
    assert "sees no CUDA device" in capsys.readouterr().err
    assert "sees no CUDA device" in json.loads(out.read_text())["error"]


def test_print_install_names_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_check.main(["--print-install"]) == 0
    text = capsys.readouterr().out
    for needle in ("pip install torch==2.14.1 torchvision==0.29.1", "pip install -e .",
                   "pip install onnxruntime-gpu", "pip uninstall -y onnxruntime",
                   "--device cuda --json $OUT/gpu_check.json", "--no-deps"):
        assert needle in text, needle
    assert gpu_check.INSTALL.splitlines()[0].strip() in (gpu_check.__doc__ or "")


@pytest.mark.integration
def test_isolated_cell_failure_falls_back_to_isolation_none(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = gpu_check.run_one_cell

    def isolated_breaks(overrides: list[str], pm: Any) -> dict[str, Any]:
        if "isolation=none" not in overrides:
            return {"status": "error", "error": {"message": "worker died"}}
        return real(overrides, pm)

    monkeypatch.setattr(gpu_check, "run_one_cell", isolated_breaks)
    args = gpu_check.parser().parse_args(["--device", "cpu", *SMALL, *CELL])
    cell = gpu_check.attack_cell(args, "cpu", cache, tmp_path)
    assert cell["status"] == "error" and "worker died" in cell["reason"]
    assert cell["isolation"] == "none"
    assert 0 <= cell["exit_estimation_accuracy"] <= 1
    assert len(cell["served_victim"]["per_exit"]) == 4
