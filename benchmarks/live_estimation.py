"""Exit estimation on *live* latencies: every detector vs the Bayes-optimal bound.

Serves the attacker pool and the test split of a victim (default ``digits_cnn``) with true
per-sample early exit on this machine (``--backend torch|onnx``, one thread, batch size
1), so exits follow the victim's own strategy and latencies carry this machine's real
noise and heavy tail. Each detector then estimates the exits from the latencies alone
(number of exits given, and inferred: ``?``), compared with the cross-validated
Bayes-optimal timing-only accuracy. JSON to ``benchmarks/results/live_estimation.json``.

Usage: ``python benchmarks/live_estimation.py [--victim NAME] [--backend onnx] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json
from harness.cell.server import prepare_registered_victim
from harness.cell.spec import CellEnvironment
from harness.metrics.leakage import bayes_exit_accuracy
from harness.plugins.registry import load_registry
from harness.run.config import default_cache_dir


def live_trace(victim_name: str, backend: str, rounds: int):
    registry = load_registry()
    env = CellEnvironment(cache_dir=default_cache_dir(), data_root=None)
    victim = prepare_registered_victim(registry, victim_name, {}, env, "cpu")
    served = registry.get("backend", backend).cls().load(victim, "cpu", env.cache_dir)
    x = np.concatenate([victim.data.attacker.x, victim.data.test.x] * rounds)
    trace = served.serve(x, strategy=victim.strategy)
    return trace.latency_s, trace.exits, victim.model.num_exits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", default="digits_cnn")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnx"))
    parser.add_argument("--rounds", type=int, default=2, help="passes over pool + test")
    parser.add_argument("--out", default=None,
                        help="default: benchmarks/results/live_estimation_<backend>.json")
    args = parser.parse_args()
    start = time.perf_counter()
    latency, exits, k = live_trace(args.victim, args.backend, args.rounds)
    rng = np.random.default_rng(0)
    row = {"victim": args.victim, "backend": args.backend, "n": len(latency),
           "p50_us": float(np.median(latency) * 1e6), "p99_us": float(np.quantile(latency, .99) * 1e6),
           "bayes_optimal": bayes_exit_accuracy(latency, exits)}
    timings = {}
    estimators = [e.cls for e in load_registry().entries(
        "exit_estimator") if not e.cls.reference]
    for cls in estimators:
        for given in (True, False):
            key = cls.name if given else f"{cls.name}?"
            t0 = time.perf_counter()
            est = cls().estimate(latency, k if given else None, rng)
            timings[key] = time.perf_counter() - t0
            row[key] = float(np.mean(est.exits == exits))
    names = [c.name for c in estimators]
    print_table([row], ["victim", "backend", "n", "p50_us", "p99_us", "bayes_optimal",
                        *[x for nm in names for x in (nm, f"{nm}?")]])
    out = args.out or f"benchmarks/results/live_estimation_{args.backend}.json"
    path = write_json(out, {"row": row, "estimator_seconds": timings,
                                 "exit_histogram": np.bincount(exits, minlength=k).tolist(),
                                 "wall_s": time.perf_counter() - start})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
