"""Timing one served model's exits on a device, and keeping the latencies as corpus traces.

Used by ``gpu_check.py``: each request is bracketed by a timer of the device (CUDA events
on cuda, ``perf_counter_ns`` on cpu) beside the backend's own figure; a measurement runs
under the load monitor; the latencies of the serving sections become a plan of the latency
corpus (``latency_corpus.py``'s format), so a deployment can be calibrated from them.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._common import repo_relative
from benchmarks.latency_corpus import trace_row, write_plan
from harness.metrics.leakage import bayes_exit_accuracy
from harness.protocol import ServedModel, TrainedVictim
from harness.timing.load_monitor import LoadMonitor
from victims.serving.staged import StagedServedModel


class PerfCounterTimer:
    """Host wall-clock time of one call (``perf_counter_ns``)."""

    name = "perf_counter_ns"

    def time(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        t0 = time.perf_counter_ns()
        out = fn()
        return (time.perf_counter_ns() - t0) * 1e-9, out


class CudaEventTimer:
    """GPU-timeline time between two CUDA events around one call (then synchronised).

    The stream is drained first, so the start event fires when the request arrives; the
    served call returns with its logits on the host, so the end event marks the answer.
    """

    name = "cuda_event"

    def __init__(self) -> None:
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def time(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        torch.cuda.synchronize()
        self.start.record()
        out = fn()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) * 1e-3, out


def make_timer(device: str) -> PerfCounterTimer | CudaEventTimer:
    return CudaEventTimer() if device == "cuda" else PerfCounterTimer()


def time_exits(served: ServedModel, x: np.ndarray, samples_per_exit: int,
               timer: PerfCounterTimer | CudaEventTimer, warmup: int = 5) -> dict[str, Any]:
    """Serve one input at a time forced to each exit (exits interleaved), timed by ``timer``.

    For the built-in (staged) backends ``timer`` brackets exactly the span the backend
    times itself (input arrival to the answering exit's probabilities, inside its serving
    session); other backends are bracketed around ``serve`` of one input. Returns per exit
    the samples (``latency_us``) and median/p90 of ``timer``, the backend's own median/p90,
    and the cross-validated Bayes-optimal accuracy of telling the exits apart by ``timer``.
    """
    k_exits = served.num_exits
    lat = np.zeros((samples_per_exit, k_exits))
    own = np.zeros((samples_per_exit, k_exits))
    staged = isinstance(served, StagedServedModel)
    x = served._check_inputs(x) if staged else np.ascontiguousarray(x, dtype=np.float32)

    def request(x1: np.ndarray, k: int) -> float:
        """One request forced to exit ``k``; returns the backend's own latency (s)."""
        if staged:
            return served._serve_one(x1, None, k)[0] * 1e-9
        return float(served.serve(x1, exits=np.array([k])).latency_s[0])

    with served._session() if staged else contextlib.nullcontext():
        for i in range(warmup):
            for k in range(k_exits):
                request(x[i % len(x)][None], k)
        for i in range(samples_per_exit):
            for k in range(k_exits):
                x1 = x[(i * k_exits + k) % len(x)][None]
                lat[i, k], own[i, k] = timer.time(lambda x1=x1, k=k: request(x1, k))
    per_exit = [{"exit": k, "n": samples_per_exit,
                 "median_us": float(np.median(lat[:, k]) * 1e6),
                 "p90_us": float(np.quantile(lat[:, k], 0.9) * 1e6),
                 "backend_median_us": float(np.median(own[:, k]) * 1e6),
                 "backend_p90_us": float(np.quantile(own[:, k], 0.9) * 1e6),
                 "latency_us": np.round(lat[:, k] * 1e6, 2).tolist()}
                for k in range(k_exits)]
    true = np.tile(np.arange(k_exits), samples_per_exit)
    return {"timer": timer.name, "backend_timer": "perf_counter_ns (+ device synchronize)",
            "per_exit": per_exit, "bayes_exit_accuracy": bayes_exit_accuracy(lat.ravel(), true)}


def monitored(measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``measure()`` under a load monitor: its result plus ``load`` and ``quiet`` (steal
    time and other processes' CPU within the stated thresholds; pressure is not judged,
    the serving threads make their own)."""
    with LoadMonitor() as monitor:
        out = measure()
    assert monitor.report is not None
    return {**out, "load": monitor.report.to_json(),
            "quiet": not monitor.report.problems(judge_pressure=False)}


def write_traces(result: dict[str, Any], victim: TrainedVictim, args: argparse.Namespace,
                 device: str, directory: Path) -> dict[str, Any]:
    """The serving sections' latencies as a plan of the latency corpus (the format of
    ``benchmarks/latency_corpus.py``), so a deployment can be calibrated from them: one
    trace per backend that served, its exits interleaved as they were requested."""
    plan = args.trace_plan or ("gpu" if device == "cuda" else f"{device}_check")
    rows, arrays = [], {}
    for key in ("torch_serving", "onnx_serving"):
        section = result[key]
        if section.get("status") != "ok":
            continue
        per_exit = section["per_exit"]
        lat = np.array([e["latency_us"] for e in per_exit], dtype=np.float64).T  # (n, K)
        exits = np.tile(np.arange(len(per_exit)), len(lat))
        name = f"{plan}_{section['backend']}"
        latency_us = lat.ravel().astype(np.float32)
        rows.append(trace_row(
            name, latency_us, exits, input_shape=list(victim.model.input_shape),
            num_exits=len(per_exit), width=args.width, backend=section["backend"],
            threads=args.threads, background="none", pattern="back_to_back", mix="balanced",
            seed=args.seed, split=plan, deployment=plan, device=section["device"],
            timer=section["timer"], cost_fraction=list(victim.model.cost_fraction),
            load=section.get("load"), quiet=bool(section.get("quiet", False))))
        arrays[f"{name}_latency_us"] = latency_us
        arrays[f"{name}_exits"] = exits.astype(np.uint8)
    if not rows:
        return {"status": "skipped", "reason": "no serving section measured latencies"}
    npz = write_plan(plan, rows, arrays, machine=result["environment"], directory=directory)
    return {"status": "ok", "plan": plan, "npz": repo_relative(npz), "traces": [r["name"] for r in rows],
            "bayes_optimal": {r["name"]: r["bayes_optimal"] for r in rows}}
