"""Exit estimation on the live-trace corpus: gap to the Bayes bound, occupied exits, speed.

For every trace of ``benchmarks/corpus`` (see ``latency_corpus.py``) and every registered
latency-only exit estimator:

* ``K given``: accuracy of the estimated exits with the true number of exits, and its gap to
  the trace's Bayes-optimal timing-only accuracy. The target is a gap of at most
  ``max(1 point, 2 standard errors of the bound)`` on every trace with n >= 2,000;
* ``K hidden``: whether the number of *occupied* exits (distinct estimated exits) equals the
  trace's, and the accuracy of the exits it then assigns; ``occupied_given_right`` is the
  same count with ``K`` given (an estimator may leave exits empty, e.g. ``bayes`` with
  ``occupied=penalised``).

The dedicated plans record each network's cost fractions; the estimators get them there
(as the attack does when the threat model grants the architecture).

Tuned and held-out traces are reported apart; the held-out ones were never tuned on.
Writes ``benchmarks/results/estimation_corpus.json`` and prints one table per split.

Usage: ``python benchmarks/estimation_corpus.py [--estimators bayes,bayes:occupied=penalised]
[--plans tuned,heldout,dedicated,dedicated_heldout] [--min-n 0]``
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
    cost = trace.get("cost_fraction")  # recorded by the dedicated plans: the architecture's
    extra = {"cost_fraction": tuple(cost)} if cost else {}
    t0 = time.perf_counter()
    given = estimator.estimate(lat, k, rng, **extra)
    seconds = time.perf_counter() - t0
    acc = float(np.mean(given.exits == exits))
    hidden = estimator.estimate(lat, None, rng, **extra)
    occupied_true = len(np.unique(exits))
    occupied_est = len(np.unique(hidden.exits))
    bound, se = trace["bayes_optimal"], trace["bayes_optimal_se"]
    allowed = max(0.01, 2 * se)
    return {"trace": trace["name"], "split": trace["split"], "n": len(lat), "k": k,
            "bound": bound, "accuracy": acc, "gap": bound - acc, "allowed_gap": allowed,
            "meets_target": bool(bound - acc <= allowed),
            "occupied_true": occupied_true, "occupied_est": occupied_est,
            "occupied_right": occupied_true == occupied_est,
            "occupied_given_right": occupied_true == len(np.unique(given.exits)),
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
            "occupied_given_right": (float(np.mean([r["occupied_given_right"] for r in big]))
                                     if big else None),
            "max_seconds": max((r["seconds"] for r in big), default=None)}


def parse_estimator(spec: str) -> tuple[str, str, dict[str, str]]:
    """``name`` or ``name:param=value,...`` (e.g. ``bayes:occupied=penalised``) -> (label,
    name, params); string parameter values only."""
    name, _, rest = spec.partition(":")
    params = dict(p.split("=", 1) for p in rest.split(";") if p) if rest else {}
    return spec, name, params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--estimators", default=None,
                        help="comma-separated names, each optionally NAME:PARAM=VALUE;... "
                             "(e.g. bayes:occupied=penalised); default: all registered")
    parser.add_argument("--plans", default="tuned,heldout",
                        help="corpus plans (also dedicated, dedicated_heldout)")
    parser.add_argument("--min-n", type=int, default=TARGET_N,
                        help="traces counted in the summary (the target is for n >= 2000)")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()
    registry = load_registry()
    specs = [parse_estimator(s) for s in (args.estimators.split(",") if args.estimators else
             [e.name for e in registry.entries("exit_estimator") if not e.cls.reference])]
    names = [label for label, _, _ in specs]
    traces = load_corpus(tuple(args.plans.split(",")))
    if not traces:
        raise SystemExit("no corpus: run `python benchmarks/latency_corpus.py record --plan "
                         "tuned` (and --plan heldout) first")
    started = time.perf_counter()
    rows = []
    for label, name, params in specs:
        estimator = registry.get("exit_estimator", name).cls(**params)
        for trace in traces:
            rows.append({"estimator": label, **evaluate(estimator, trace)})
    summary = []
    for name in names:
        for split in dict.fromkeys(t["split"] for t in traces):
            part = [r for r in rows if r["estimator"] == name and r["split"] == split]
            summary.append({"estimator": name, "split": split, **summarise(part, args.min_n)})
    for split in dict.fromkeys(t["split"] for t in traces):
        print(f"\n{split} traces with n >= {args.min_n}: worst gap to the Bayes bound")
        print_table([s for s in summary if s["split"] == split],
                    ["estimator", "traces", "meet_target", "worst_trace", "worst_gap",
                     "worst_allowed", "mean_gap", "occupied_right", "occupied_given_right",
                     "max_seconds"])
    path = write_json(args.out, {"summary": summary, "rows": rows, "min_n": args.min_n,
                                 "wall_s": round(time.perf_counter() - started, 1)})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
