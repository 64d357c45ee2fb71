"""Record a corpus of live latency traces with true exits (estimation and timing calibration).

Each trace serves real inputs through a real backend with true per-sample early exit,
every query forced to an exit drawn from the trace's exit mix (the victim's strategy is
still evaluated on the way, as a server does), and keeps each query's measured latency
and true exit. The factors vary across traces, each level in at least two of them:

* network: ``small_cnn`` width 8/32/64, 3-8 exits, 1x8x8 or 3x32x32 inputs, torch or ONNX;
* exit mix: balanced, one exit at 50-90%, exits at 1-2%, an exit never used;
* machine: 1 or 2 threads, with or without a CPU-bound background process;
* query pattern: back to back, or spaced by random gaps (0.2-2 ms);
* size: n from 200 to 20,000.

Two deployments, each with traces to fit on and held-out traces never fitted on:

* ``tuned`` / ``heldout`` (the **shared** deployment): recorded on a multi-tenant day
  (other heavy jobs on the machine), some traces beside a CPU- or memory-bound
  background process;
* ``dedicated`` / ``dedicated_heldout`` (the **dedicated** deployment): one request at a
  time on an otherwise idle server. The recording process is pinned (one CPU for
  one-thread traces), no background process runs, and a
  :class:`~harness.timing.load_monitor.LoadMonitor` samples steal time and CPU pressure
  throughout each trace: a trace above :data:`~harness.timing.load_monitor.QUIET` is
  recorded again (up to ``RETRIES`` times) and kept marked ``quiet: false`` (never fitted
  on) if it stays noisy. The held-out plan also serves the registered ``digits_cnn``
  itself (torch and ONNX, 1 and 2 threads) with its own policy on its attacker split.

Each trace stores float32 latencies in microseconds and uint8 exits in
``benchmarks/corpus/<plan>.npz``; the metadata, with each trace's Bayes-optimal
timing-only exit accuracy (:func:`harness.metrics.leakage.bayes_exit_accuracy`, 5-fold
cross-validated, plus its binomial standard error), its network's exit cost fractions
and the load report, goes to ``benchmarks/corpus/<plan>.json``.

Usage: ``python benchmarks/latency_corpus.py record --plan PLAN`` (record nothing else
heavy meanwhile) and ``python benchmarks/latency_corpus.py show``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json
from harness.cell.server import prepare_registered_victim
from harness.cell.spec import CellEnvironment
from harness.io.atomic import atomic_write_bytes
from harness.io.provenance import machine_info
from harness.metrics.leakage import bayes_exit_accuracy
from harness.model import exit_probabilities
from harness.plugins.registry import Registry, load_registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import TrainedVictim
from harness.run.config import default_cache_dir
from harness.strategy import OutputStrategy
from harness.testing.fixtures import random_splits, spread_thresholds, weights_digest
from harness.timing.load_monitor import QUIET, LoadMonitor

CORPUS = Path(__file__).resolve().parent / "corpus"

MIXES = {
    "balanced": "equal shares",
    "dominant": "one exit takes 50-90%, the rest share what is left",
    "rare": "two exits take 1-2% each",
    "unused": "one exit is never used",
    "dominant_rare": "one exit at 85-90%, others 1-5%, one at 1%",
    "victim": "the registered victim's own policy on its attacker split",
}
RETRIES = 3
"""How often a dedicated trace is recorded again when the machine was not quiet."""

BACKGROUND = {
    "none": None,
    "cpu": "x = 1.0\nwhile True:\n    x = x * 1.0000001 + 1e-9\n",
    "memory": ("import numpy as np\na = np.ones(8_000_000)\nb = np.empty_like(a)\n"
               "while True:\n    np.copyto(b, a)\n    np.copyto(a, b)\n"),
}


@dataclass(frozen=True)
class TraceSpec:
    """One trace of the corpus: network, mix, machine, pattern, size."""

    name: str
    input_shape: tuple[int, ...]
    num_exits: int
    width: int
    backend: str
    threads: int
    background: str
    pattern: str
    mix: str
    n: int
    seed: int
    victim: str = ""
    """A registered victim to serve instead of a fresh ``small_cnn`` (its own exit mix)."""


def _t(name, shape, k, width, backend, threads, background, pattern, mix, n, seed):
    return TraceSpec(name, shape, k, width, backend, threads, background, pattern, mix, n, seed)


def _d(name, shape, k, width, backend, threads, pattern, mix, n, seed):
    """A dedicated-deployment trace: no background process."""
    return _t(name, shape, k, width, backend, threads, "none", pattern, mix, n, seed)


def _v(name, backend, threads, n, seed):
    """A trace of the registered ``digits_cnn`` under its own policy."""
    return TraceSpec(name, (1, 8, 8), 4, 32, backend, threads, "none", "back_to_back",
                     "victim", n, seed, victim="digits_cnn")


SMALL, LARGE = (1, 8, 8), (3, 32, 32)
TUNED = (
    _t("t01", SMALL, 4, 32, "torch", 1, "none", "back_to_back", "balanced", 2000, 1),
    _t("t02", SMALL, 4, 32, "torch", 1, "none", "back_to_back", "dominant", 5000, 2),
    _t("t03", SMALL, 5, 64, "torch", 2, "none", "back_to_back", "rare", 2000, 3),
    _t("t04", SMALL, 6, 32, "onnx", 1, "none", "back_to_back", "unused", 5000, 4),
    _t("t05", SMALL, 3, 8, "torch", 1, "cpu", "back_to_back", "balanced", 500, 5),
    _t("t06", SMALL, 8, 32, "torch", 1, "none", "spaced", "dominant_rare", 5000, 6),
    _t("t07", LARGE, 4, 8, "torch", 1, "none", "back_to_back", "dominant", 2000, 7),
    _t("t08", LARGE, 5, 32, "onnx", 2, "cpu", "back_to_back", "balanced", 2000, 8),
    _t("t09", SMALL, 4, 64, "onnx", 1, "cpu", "spaced", "rare", 2000, 9),
    _t("t10", SMALL, 5, 32, "torch", 2, "cpu", "back_to_back", "unused", 2000, 10),
    _t("t11", LARGE, 3, 32, "torch", 1, "none", "spaced", "unused", 2000, 11),
    _t("t12", SMALL, 6, 8, "torch", 1, "none", "back_to_back", "dominant", 20000, 12),
    _t("t13", SMALL, 7, 32, "onnx", 2, "none", "spaced", "dominant_rare", 2000, 13),
    _t("t14", LARGE, 6, 8, "onnx", 1, "none", "back_to_back", "rare", 5000, 14),
    _t("t15", SMALL, 3, 64, "torch", 1, "cpu", "back_to_back", "dominant", 200, 15),
    _t("t16", SMALL, 8, 8, "onnx", 1, "none", "back_to_back", "balanced", 20000, 16),
    _t("t17", LARGE, 4, 32, "torch", 2, "none", "back_to_back", "dominant_rare", 5000, 17),
    _t("t18", SMALL, 5, 8, "torch", 1, "cpu", "spaced", "dominant", 500, 18),
    _t("t19", SMALL, 7, 32, "torch", 1, "none", "back_to_back", "rare", 2000, 19),
    _t("t20", LARGE, 5, 8, "torch", 1, "cpu", "back_to_back", "unused", 2000, 20),
    _t("t21", SMALL, 4, 8, "onnx", 2, "cpu", "back_to_back", "dominant", 2000, 21),
    _t("t22", SMALL, 3, 32, "onnx", 1, "none", "spaced", "balanced", 200, 22),
    _t("t23", LARGE, 8, 8, "torch", 1, "none", "back_to_back", "dominant_rare", 2000, 23),
    _t("t24", SMALL, 6, 64, "torch", 2, "none", "back_to_back", "balanced", 5000, 24),
)
HELDOUT = (
    _t("h01", SMALL, 4, 32, "torch", 1, "memory", "back_to_back", "dominant", 5000, 101),
    _t("h02", SMALL, 5, 64, "onnx", 2, "memory", "back_to_back", "rare", 2000, 102),
    _t("h03", LARGE, 4, 8, "torch", 1, "none", "spaced", "unused", 2000, 103),
    _t("h04", SMALL, 6, 32, "torch", 1, "memory", "back_to_back", "dominant_rare", 20000, 104),
    _t("h05", SMALL, 3, 8, "onnx", 1, "none", "back_to_back", "balanced", 2000, 105),
    _t("h06", LARGE, 5, 32, "torch", 2, "memory", "spaced", "dominant", 2000, 106),
    _t("h07", SMALL, 8, 32, "torch", 1, "memory", "back_to_back", "unused", 5000, 107),
    _t("h08", SMALL, 4, 64, "torch", 1, "none", "back_to_back", "rare", 500, 108),
    _t("h09", LARGE, 6, 8, "onnx", 1, "memory", "back_to_back", "balanced", 2000, 109),
    _t("h10", SMALL, 5, 8, "torch", 2, "none", "spaced", "dominant_rare", 2000, 110),
    _t("h11", SMALL, 7, 32, "onnx", 1, "memory", "back_to_back", "dominant", 2000, 111),
    _t("h12", SMALL, 3, 32, "torch", 1, "memory", "back_to_back", "rare", 200, 112),
)
DEDICATED = (
    _d("d01", SMALL, 4, 32, "torch", 1, "back_to_back", "balanced", 2000, 201),
    _d("d02", SMALL, 4, 32, "torch", 1, "back_to_back", "dominant", 5000, 202),
    _d("d03", SMALL, 5, 64, "torch", 2, "back_to_back", "rare", 2000, 203),
    _d("d04", SMALL, 6, 32, "onnx", 1, "back_to_back", "unused", 5000, 204),
    _d("d05", SMALL, 3, 8, "torch", 1, "back_to_back", "balanced", 1000, 205),
    _d("d06", SMALL, 8, 32, "torch", 1, "spaced", "dominant_rare", 3000, 206),
    _d("d07", LARGE, 4, 8, "torch", 1, "back_to_back", "dominant", 2000, 207),
    _d("d08", LARGE, 5, 32, "onnx", 2, "back_to_back", "balanced", 2000, 208),
    _d("d09", SMALL, 4, 64, "onnx", 1, "spaced", "rare", 2000, 209),
    _d("d10", SMALL, 5, 32, "torch", 2, "back_to_back", "unused", 2000, 210),
    _d("d11", LARGE, 3, 32, "torch", 1, "spaced", "unused", 2000, 211),
    _d("d12", SMALL, 6, 8, "torch", 1, "back_to_back", "dominant", 10000, 212),
    _d("d13", SMALL, 7, 32, "onnx", 2, "spaced", "dominant_rare", 2000, 213),
    _d("d14", LARGE, 6, 8, "onnx", 1, "back_to_back", "rare", 5000, 214),
    _d("d15", SMALL, 3, 64, "torch", 1, "back_to_back", "dominant", 500, 215),
    _d("d16", SMALL, 8, 8, "onnx", 1, "back_to_back", "balanced", 10000, 216),
    _d("d17", LARGE, 4, 32, "torch", 2, "back_to_back", "dominant_rare", 3000, 217),
    _d("d18", SMALL, 5, 8, "torch", 1, "spaced", "dominant", 1000, 218),
    _d("d19", SMALL, 7, 32, "torch", 1, "back_to_back", "rare", 2000, 219),
    _d("d20", LARGE, 5, 8, "torch", 1, "back_to_back", "unused", 2000, 220),
    _d("d21", SMALL, 4, 8, "onnx", 2, "back_to_back", "dominant", 2000, 221),
    _d("d22", SMALL, 3, 32, "onnx", 1, "spaced", "balanced", 500, 222),
    _d("d23", LARGE, 8, 8, "torch", 1, "back_to_back", "dominant_rare", 2000, 223),
    _d("d24", SMALL, 6, 64, "torch", 2, "back_to_back", "balanced", 3000, 224),
)
DEDICATED_HELDOUT = (
    _d("e01", SMALL, 4, 32, "torch", 1, "back_to_back", "dominant", 3000, 301),
    _d("e02", SMALL, 5, 64, "onnx", 2, "back_to_back", "rare", 2000, 302),
    _d("e03", LARGE, 4, 8, "torch", 1, "spaced", "unused", 2000, 303),
    _d("e04", SMALL, 6, 32, "torch", 1, "back_to_back", "dominant_rare", 10000, 304),
    _d("e05", SMALL, 3, 8, "onnx", 1, "back_to_back", "balanced", 2000, 305),
    _d("e06", LARGE, 5, 32, "torch", 2, "spaced", "dominant", 2000, 306),
    _d("e07", SMALL, 8, 32, "torch", 1, "back_to_back", "unused", 3000, 307),
    _d("e08", SMALL, 4, 64, "torch", 1, "back_to_back", "rare", 1000, 308),
    _d("e09", LARGE, 6, 8, "onnx", 1, "back_to_back", "balanced", 2000, 309),
    _d("e10", SMALL, 5, 8, "torch", 2, "spaced", "dominant_rare", 2000, 310),
    _d("e11", SMALL, 7, 32, "onnx", 1, "back_to_back", "dominant", 2000, 311),
    _d("e12", SMALL, 3, 32, "torch", 1, "back_to_back", "rare", 500, 312),
    _v("v01", "torch", 1, 2000, 401),
    _v("v02", "torch", 2, 2000, 402),
    _v("v03", "onnx", 1, 2000, 403),
    _v("v04", "onnx", 2, 2000, 404),
)
PLANS = {"tuned": TUNED, "heldout": HELDOUT, "dedicated": DEDICATED,
         "dedicated_heldout": DEDICATED_HELDOUT}
DEPLOYMENT_OF = {"tuned": "shared", "heldout": "shared", "dedicated": "dedicated",
                 "dedicated_heldout": "dedicated"}


def mix_weights(mix: str, k: int, rng: np.random.Generator) -> np.ndarray:
    """Exit shares of a named mix (seeded: which exits are dominant, rare or unused)."""
    order = rng.permutation(k)
    w = np.ones(k)
    if mix == "dominant":
        w[:] = (1 - (big := rng.uniform(0.5, 0.9))) / (k - 1)
        w[order[0]] = big
    elif mix == "rare":
        w[order[:2]] = rng.uniform(0.01, 0.02, 2)
        w[order[2:]] = (1 - w[order[:2]].sum()) / (k - 2)
    elif mix == "unused":
        w[order[0]] = 0.0
        w /= w.sum()
    elif mix == "dominant_rare":
        w[order[0]] = rng.uniform(0.85, 0.9)
        w[order[1]] = 0.01
        rest = order[2:]
        w[rest] = rng.uniform(0.01, 0.05, len(rest))
        w[order[0]] = 1 - w[order[1:]].sum()
    return w / w.sum()


def build_victim(spec: TraceSpec, registry: Registry) -> TrainedVictim:
    """The trace's victim: the registered one, or a fresh ``small_cnn`` with thresholds
    that spread random inputs evenly (the mix is forced per query anyway)."""
    if spec.victim:
        env = CellEnvironment(cache_dir=default_cache_dir(), data_root=None)
        return prepare_registered_victim(registry, spec.victim, {}, env, "cpu")
    data = random_splits(spec.input_shape, 10, (16, 16, 256, 256), seed=spec.seed)
    net = Toolbox(registry).new_network("small_cnn", spec.input_shape, 10, spec.num_exits,
                                        spec.seed, width=spec.width).eval()
    policy = registry.policy("max_prob")
    strategy = OutputStrategy(policy, spread_thresholds(exit_probabilities(net, data.test.x),
                                                        policy))
    return TrainedVictim(f"corpus_{spec.name}", net, strategy, data, "small_cnn",
                         weights_digest(net))


def build_served(spec: TraceSpec, registry: Registry, cache_dir: Path):
    victim = build_victim(spec, registry)
    backend = registry.get("backend", spec.backend).cls
    params = {"num_threads": spec.threads} if spec.backend == "torch" else {
        "intra_op_num_threads": spec.threads}
    return backend(warmup=0, **params).load(victim, "cpu", cache_dir), victim


def record_trace(spec: TraceSpec, registry: Registry, cache_dir: Path,
                 built: tuple | None = None) -> dict:
    served, victim = built or build_served(spec, registry, cache_dir)
    rng = np.random.default_rng([spec.seed, 9])
    if spec.victim:  # the victim's own policy decides: its natural exit mix
        pool = victim.data.attacker.x
        x = pool[rng.integers(0, len(pool), spec.n)]
        exits = victim.strategy.exits(served.exit_probs(x))
        weights = np.bincount(exits, minlength=spec.num_exits) / spec.n
    else:
        weights = mix_weights(spec.mix, spec.num_exits, rng)
        exits = rng.choice(spec.num_exits, size=spec.n, p=weights).astype(np.int64)
        pool = victim.data.test.x
        x = pool[rng.integers(0, len(pool), spec.n)]
    warm = np.arange(min(64, spec.n)) % spec.num_exits
    served.serve(x[:len(warm)], strategy=victim.strategy, exits=warm)
    if spec.pattern == "spaced":
        gaps = rng.uniform(0.2e-3, 2e-3, spec.n)
        lat = np.empty(spec.n)
        for i in range(spec.n):
            time.sleep(gaps[i])
            lat[i] = served.serve(x[i:i + 1], strategy=victim.strategy,
                                  exits=exits[i:i + 1]).latency_s[0]
    else:
        trace = served.serve(x, strategy=victim.strategy, exits=exits)
        assert np.array_equal(trace.exits, exits)
        lat = trace.latency_s
    return {"latency_us": (lat * 1e6).astype(np.float32), "exits": exits.astype(np.uint8),
            "weights": np.asarray(weights, dtype=np.float64).tolist(),
            "cost_fraction": [float(c) for c in victim.model.cost_fraction]}


def pinned(threads: int) -> set[int]:
    """The CPUs a trace's process runs on: the last one for a one-thread trace (CPU 0 keeps
    the kernel's housekeeping), all of them otherwise."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    return set(cpus[-threads:]) if threads < len(cpus) else set(cpus)


def record_quiet(spec: TraceSpec, registry: Registry, cache_dir: Path) -> tuple[dict, dict]:
    """A dedicated trace, pinned and monitored, recorded again while the machine is busy:
    (the trace, its load report with the attempts and whether it was quiet)."""
    everything = os.sched_getaffinity(0)
    attempts = []
    try:
        os.sched_setaffinity(0, pinned(spec.threads))
        built = build_served(spec, registry, cache_dir)  # training, export: not monitored
        for _ in range(RETRIES):
            with LoadMonitor() as monitor:
                rec = record_trace(spec, registry, cache_dir, built)
            report = monitor.report
            problems = report.problems(judge_pressure=len(pinned(spec.threads)) < len(everything))
            attempts.append({**report.to_json(), "problems": problems})
            if not problems:
                break
            print(f"  {spec.name}: not quiet ({'; '.join(problems)}); recording again", flush=True)
    finally:
        os.sched_setaffinity(0, everything)
    return rec, {**attempts[-1], "attempts": len(attempts), "quiet": not attempts[-1]["problems"],
                 "thresholds": QUIET, "cpus": sorted(pinned(spec.threads))}


class Background:
    """A background process of the given kind, alive inside the ``with`` block."""

    def __init__(self, kind: str) -> None:
        self.code = BACKGROUND[kind]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Background:
        if self.code is not None:
            self.proc = subprocess.Popen([sys.executable, "-c", self.code])
            time.sleep(1.0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def record(plan: str) -> None:
    registry = load_registry()
    arrays, meta = {}, []
    started = time.perf_counter()
    dedicated = DEPLOYMENT_OF[plan] == "dedicated"
    with tempfile.TemporaryDirectory() as tmp:
        for spec in PLANS[plan]:
            t0 = time.perf_counter()
            load = None
            if dedicated:
                rec, load = record_quiet(spec, registry, Path(tmp))
            else:
                with Background(spec.background):
                    rec = record_trace(spec, registry, Path(tmp))
            spec_fields = {k: v for k, v in asdict(spec).items() if k not in ("name", "n")}
            row = trace_row(spec.name, rec["latency_us"], rec["exits"], **spec_fields,
                            split=plan, deployment=DEPLOYMENT_OF[plan],
                            exit_weights=rec["weights"], cost_fraction=rec["cost_fraction"],
                            load=load, quiet=True if load is None else load["quiet"],
                            seconds=round(time.perf_counter() - t0, 2))
            bound = row["bayes_optimal"]
            meta.append(row)
            arrays[f"{spec.name}_latency_us"] = rec["latency_us"]
            arrays[f"{spec.name}_exits"] = rec["exits"]
            quiet = "" if load is None else (
                f" steal {load['steal_pct']}% pressure {load['pressure_pct']}% other "
                f"{load['other_cpu_cores']} cores{'' if load['quiet'] else ' NOT QUIET'}")
            print(f"{spec.name}: n={spec.n} k={spec.num_exits} {spec.mix} {spec.backend} "
                  f"t={spec.threads} bg={spec.background} {spec.pattern}: bayes {bound:.3f} "
                  f"({row['seconds']}s){quiet}", flush=True)
    npz = write_plan(plan, meta, arrays, machine=asdict(machine_info("cpu")),
                     wall_s=round(time.perf_counter() - started, 1))
    print(f"wrote {npz} ({npz.stat().st_size / 1024:.0f} KiB) and {plan}.json")


BAYES_METHOD = ("harness.metrics.leakage.bayes_exit_accuracy: 5-fold cross-validated argmax "
                "prior x Gaussian KDE (Silverman) density of log latency; se = "
                "sqrt(acc (1 - acc) / n)")


def trace_row(name: str, latency_us: np.ndarray, exits: np.ndarray, **fields: Any) -> dict:
    """A corpus metadata row for one trace: ``fields`` (the trace's spec and context) plus
    the figures every trace carries (exit counts, Bayes bound and its se, p50/p99)."""
    lat_s = np.asarray(latency_us, dtype=np.float64) * 1e-6
    exits = np.asarray(exits, dtype=np.int64)
    bound = bayes_exit_accuracy(lat_s, exits)
    return {"name": name, "n": len(exits), **fields,
            "exit_counts": np.bincount(exits, minlength=int(fields.get(
                "num_exits", exits.max() + 1))).tolist(),
            "bayes_optimal": bound,
            "bayes_optimal_se": float(np.sqrt(bound * (1 - bound) / max(len(exits), 1))),
            "p50_us": float(np.median(latency_us)),
            "p99_us": float(np.quantile(latency_us, 0.99))}


def write_plan(plan: str, rows: list[dict], arrays: dict[str, np.ndarray], *,
               machine: dict[str, Any], wall_s: float | None = None,
               directory: Path = CORPUS) -> Path:
    """Write a plan in the corpus format: ``<plan>.npz`` (``<name>_latency_us`` float32,
    ``<name>_exits`` uint8) and ``<plan>.json`` (the rows and the recording's context);
    returns the npz path. Both are written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    npz = directory / f"{plan}.npz"
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".npz", delete=False) as fh:
        np.savez_compressed(fh, **arrays)
    Path(fh.name).replace(npz)
    write_json(directory / f"{plan}.json", {
        "plan": plan, "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine, "mixes": MIXES, "traces": rows, "wall_s": wall_s,
        "bayes_method": BAYES_METHOD})
    atomic_write_bytes(directory / ".gitattributes", b"*.npz binary\n")
    return npz


def load_corpus(plans: tuple[str, ...] = ("tuned", "heldout"),
                directory: Path = CORPUS) -> list[dict]:
    """Every recorded trace of ``plans`` (a plan not recorded is skipped): its metadata
    plus ``latency_s`` and ``exits``."""
    traces = []
    for plan in plans:
        meta_path = directory / f"{plan}.json"
        if not meta_path.exists():
            continue
        meta = json.loads(meta_path.read_text())
        with np.load(directory / f"{plan}.npz") as arrays:
            for row in meta["traces"]:
                traces.append({**row,
                               "latency_s": arrays[f"{row['name']}_latency_us"].astype(
                                   np.float64) * 1e-6,
                               "exits": arrays[f"{row['name']}_exits"].astype(np.int64)})
    return traces


def show() -> None:
    rows = [{k: t[k] for k in ("name", "split", "n", "num_exits", "mix", "backend", "threads",
                               "background", "pattern", "p50_us", "bayes_optimal")}
            for t in load_corpus(tuple(PLANS))]
    print_table(rows, list(rows[0]) if rows else ["name"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--plan", choices=sorted(PLANS), required=True)
    sub.add_parser("show")
    args = parser.parse_args()
    if args.command == "record":
        record(args.plan)
    else:
        show()


if __name__ == "__main__":
    main()
