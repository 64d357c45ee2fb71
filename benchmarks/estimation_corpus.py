"""Exit estimation on the live-trace corpus: gap to the Bayes bound, occupied exits, speed.

For every trace of ``benchmarks/corpus`` (see ``latency_corpus.py``) and every registered
latency-only exit estimator:

* ``K given``: accuracy of the estimated exits with the true number of exits, and its gap to
  the trace's Bayes-optimal timing-only accuracy. The target (issue 9) is a gap of at most
  ``max(1 point, 2 standard errors of the bound)`` on every trace with n >= 2,000;
* ``K hidden``: whether the number of *occupied* exits (distinct estimated exits) equals the
  trace's, and the accuracy of the exits it then assigns.

Tuned and held-out traces are reported apart; the held-out ones were never tuned on.
Writes ``benchmarks/results/estimation_corpus.json`` and prints one table per split.

Usage: ``python benchmarks/estimation_corpus.py [--estimators bayes,kde] [--min-n 0]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json
from benchmarks.latency_corpus import load_corpus
from harness.plugins.registry import load_registry

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "estimation_corpus.json"
TARGET_N = 2000


def evaluate(estimator, trace: dict) -> dict:
    lat, exits, k = trace["latency_s"], trace["exits"], trace["num_exits"]
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    given = estimator.estimate(lat, k, rng)
    seconds = time.perf_counter() - t0
    acc = float(np.mean(given.exits == exits))
    hidden = estimator.estimate(lat, None, rng)
    occupied_true = len(np.unique(exits))
    occupied_est = len(np.unique(hidden.exits))
    bound, se = trace["bayes_optimal"], trace["bayes_optimal_se"]
    allowed = max(0.01, 2 * se)
    return {"trace": trace["name"], "split": trace["split"], "n": len(lat), "k": k,
            "bound": bound, "accuracy": acc, "gap": bound - acc, "allowed_gap": allowed,
            "meets_target": bool(bound - acc <= allowed),
            "occupied_true": occupied_true, "occupied_est": occupied_est,
            "occupied_right": occupied_true == occupied_est,
            "hidden_accuracy": float(np.mean(hidden.exits == exits)), "seconds": seconds}


def summarise(rows: list[dict], min_n: int) -> dict:
    big = [r for r in rows if r["n"] >= min_n]
    worst = max(big, key=lambda r: r["gap"] - r["allowed_gap"]) if big else None
    return {"traces": len(big),
            "meet_target": sum(r["meets_target"] for r in big),
            "worst_trace": worst["trace"] if worst else None,
            "worst_gap": worst["gap"] if worst else None,
            "worst_allowed": worst["allowed_gap"] if worst else None,
            "mean_gap": float(np.mean([r["gap"] for r in big])) if big else None,
            "occupied_right": float(np.mean([r["occupied_right"] for r in big])) if big else None,
            "max_seconds": max((r["seconds"] for r in big), default=None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", default=None, help="comma-separated; default: all")
    parser.add_argument("--min-n", type=int, default=TARGET_N,
                        help="traces counted in the summary (the target is for n >= 2000)")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()
    registry = load_registry()
    names = (args.estimators.split(",") if args.estimators else
             [e.name for e in registry.entries("exit_estimator") if not e.cls.reference])
    traces = load_corpus()
    if not traces:
        raise SystemExit("no corpus: run `python benchmarks/latency_corpus.py record --plan "
                         "tuned` (and --plan heldout) first")
    started = time.perf_counter()
    rows = []
    for name in names:
        estimator = registry.get("exit_estimator", name).cls()
        for trace in traces:
            rows.append({"estimator": name, **evaluate(estimator, trace)})
    summary = []
    for name in names:
        for split in ("tuned", "heldout"):
            part = [r for r in rows if r["estimator"] == name and r["split"] == split]
            summary.append({"estimator": name, "split": split, **summarise(part, args.min_n)})
    for split in ("tuned", "heldout"):
        print(f"\n{split} traces with n >= {args.min_n}: worst gap to the Bayes bound")
        print_table([s for s in summary if s["split"] == split],
                    ["estimator", "traces", "meet_target", "worst_trace", "worst_gap",
                     "worst_allowed", "mean_gap", "occupied_right", "max_seconds"])
    path = write_json(args.out, {"summary": summary, "rows": rows, "min_n": args.min_n,
                                 "wall_s": round(time.perf_counter() - started, 1)})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
