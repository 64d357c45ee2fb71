"""Calibrate a timing deployment from its fitting traces and check it on held-out ones.

A deployment (:mod:`harness.timing.deployments`) predicts a victim's per-exit latency
from its exit cost fractions alone. From the quiet fitting traces of the dedicated
corpus (``benchmarks/corpus/dedicated``, see ``latency_corpus.py``) it takes

* **the overhead ratio**: per trace, the per-exit median latencies are fitted by
  ``a + b * cost_fraction`` (least squares); ``base/full`` is the median of ``a/b``
  (clipped at 0);
* **how far exits sit from affine**: the robust spread of the relative residuals of that
  fit (``deviation``);
* **the per-query shape**: log latency minus its exit's median log latency, pooled over
  the traces, as a quantile function at :data:`LEVELS` (bulk, shoulder, sparse tail);
* **the spread**: the scale of that shape that brings the model's Bayes exit accuracy
  closest to the fitting traces' own (mean absolute error over :data:`SPREADS`). Pooling
  traces of different widths makes the shape wider than a typical trace's; the spread
  takes it back.

The check draws, for every trace, the model's latencies for that trace's own exits and
network cost fractions (seeded) and compares the timing-only Bayes exit accuracy of the
model's draw with the trace's own (both by :func:`harness.metrics.leakage.
bayes_exit_accuracy` at the trace's size; the trace's own bound is computed again here,
not read from the corpus, so both sides use today's estimator). Held-out traces
(``dedicated_heldout``, ``digits_cnn`` itself among them) are never fitted on; their
errors are reported apart. ``full_s`` is taken from the ``digits_cnn`` torch trace: a
scale only, which no bound depends on (the estimator works on log latency).
The shared deployment keeps the calibration of the multi-tenant corpus (``tuned``) and is
checked on its held-out traces the same way.

Writes ``benchmarks/results/calibrate_timing.json`` and prints the table of what ships
(the deployments in ``harness/timing/deployments.py``); ``--fit --constants`` fits the
dedicated deployment again and prints its values as Python for that module.
Usage: ``python benchmarks/calibrate_timing.py [--fit [--constants]]``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json
from benchmarks.latency_corpus import load_corpus
from harness.metrics.leakage import bayes_exit_accuracy
from harness.plugins.registry import load_registry
from harness.plugins.toolbox import Toolbox
from harness.timing.deployments import DEPLOYMENTS, LEVELS, Deployment

MIN_PER_EXIT = 20
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "calibrate_timing.json"
PLANS = {"dedicated": ("dedicated", "dedicated_heldout"), "shared": ("tuned", "heldout")}
"""Each deployment's (fitting, held-out) corpus plans."""
REFERENCE_TRACE = "v01"
"""The fitting's absolute scale: ``digits_cnn`` on torch, one thread (``full_s``)."""
SPREADS = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9, 1.0)


def prepare(traces: list[dict], tools: Toolbox) -> list[dict]:
    """Traces with their network's exit cost fractions (the first corpus did not record
    them: its networks are rebuilt, the same ``small_cnn`` for the same seed) and their
    own Bayes exit accuracy by today's estimator (``own_bound``, computed once here, not
    read from the corpus)."""
    out = []
    for t in traces:
        if "cost_fraction" not in t:
            net = tools.new_network("small_cnn", tuple(t["input_shape"]), 10, t["num_exits"],
                                    t["seed"], width=t["width"])
            t = {**t, "cost_fraction": list(net.cost_fraction)}
        out.append({**t, "own_bound": bayes_exit_accuracy(t["latency_s"], t["exits"])})
    return out


def exit_medians(trace: dict) -> np.ndarray:
    lat, exits = trace["latency_s"], trace["exits"]
    return np.array([np.median(lat[exits == e]) if (exits == e).sum() >= MIN_PER_EXIT
                     else np.nan for e in range(trace["num_exits"])])


def affine(trace: dict) -> tuple[float, float, np.ndarray]:
    """(a, b, relative residuals) of per-exit medians ~ a + b * cost_fraction."""
    med = exit_medians(trace)
    ok = ~np.isnan(med)
    frac = np.asarray(trace["cost_fraction"])[ok]
    a, b = np.linalg.lstsq(np.column_stack([np.ones(ok.sum()), frac]), med[ok], rcond=None)[0]
    return float(a), float(b), med[ok] / (a + b * frac) - 1.0


def fit(traces: list[dict], reference: dict | None,
        spreads: tuple[float, ...] = SPREADS) -> dict[str, Any]:
    """The deployment's constants from its quiet fitting traces (the spread chosen among
    ``spreads``)."""
    ratios, residuals, shapes = [], [], []
    for trace in traces:
        a, b, rel = affine(trace)
        ratios.append(max(a / b, 0.0))
        residuals.append(rel)
        med = exit_medians(trace)
        y, exits = np.log(trace["latency_s"]), trace["exits"]
        ok = ~np.isnan(med)[exits]
        shapes.append(y[ok] - np.log(med[exits[ok]]))
    dev = np.concatenate(residuals)
    pooled = np.concatenate(shapes)
    shape = np.quantile(pooled, LEVELS)
    shape -= np.interp(0.5, LEVELS, shape)
    ratio = float(np.median(ratios))
    full = affine(reference)[1] if reference is not None else 500e-6
    fitted = Deployment("fitted", base_s=ratio * full, full_s=full, spread=1.0,
                        deviation=float(1.4826 * np.median(np.abs(dev - np.median(dev)))),
                        shape=tuple(shape), description="")
    errors = {s: summary(check(replace(fitted, spread=s), traces, "fit"))["mean_abs_error"]
              for s in spreads}
    spread = min(errors, key=errors.get)
    return {"traces": [t["name"] for t in traces], "samples": len(pooled),
            "base_over_full": ratio, "full_s": float(full), "base_s": fitted.base_s,
            "deviation": fitted.deviation, "shape": shape.tolist(), "spread": spread,
            "spread_mean_abs_error": errors}


def check(model: Deployment, traces: list[dict], split: str) -> list[dict[str, Any]]:
    """Per trace: its own bound, the model's bound for its exits and network, the error."""
    rows = []
    for trace in traces:
        rng = np.random.default_rng([int(trace["seed"]), 77])
        lat = model.latencies(trace["exits"], tuple(trace["cost_fraction"]), rng)
        bound = bayes_exit_accuracy(lat, trace["exits"])
        own = trace["own_bound"]
        rows.append({"trace": trace["name"], "split": split, "n": trace["n"],
                     "k": trace["num_exits"], "mix": trace["mix"], "backend": trace["backend"],
                     "threads": trace["threads"], "trace_bound": round(own, 4),
                     "model_bound": round(bound, 4), "error": round(bound - own, 4)})
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    errors = np.abs([r["error"] for r in rows])
    return {"traces": len(rows), "mean_abs_error": round(float(errors.mean()), 4),
            "worst_abs_error": round(float(errors.max()), 4),
            "mean_error": round(float(np.mean([r["error"] for r in rows])), 4)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true",
                        help="fit the dedicated constants again (and check what ships)")
    parser.add_argument("--constants", action="store_true",
                        help="with --fit: print the fitted constants as Python")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    tools = Toolbox(load_registry())
    for name, (fit_plan, held_plan) in PLANS.items():
        fitting = prepare([t for t in load_corpus((fit_plan,)) if t.get("quiet", True)],
                                     tools)
        held = prepare(load_corpus((held_plan,)), tools)
        entry: dict[str, Any] = {"fitting_plan": fit_plan, "heldout_plan": held_plan}
        if name == "dedicated" and args.fit:
            reference = next((t for t in held if t["name"] == REFERENCE_TRACE), None)
            entry["fit"] = fit(fitting, reference)
            if args.constants:
                f = entry["fit"]
                print(f"base_s={f['base_s']:.4g}, full_s={f['full_s']:.4g}, "
                      f"deviation={f['deviation']:.4f}, spread={f['spread']} (base/full "
                      f"{f['base_over_full']:.4f}; {len(f['traces'])} traces, {f['samples']} "
                      f"queries; mean abs error by spread {f['spread_mean_abs_error']})")
                print("DEDICATED_SHAPE = (" + ", ".join(f"{v:.4f}" for v in f["shape"]) + ")")
        model = DEPLOYMENTS[name]
        rows = check(model, fitting, "fit") + check(model, held, "heldout")
        entry.update(rows=rows, fitted=summary([r for r in rows if r["split"] == "fit"]),
                     heldout=summary([r for r in rows if r["split"] == "heldout"]))
        digits = [r for r in rows if r["trace"].startswith("v")]
        if digits:
            entry["digits_cnn"] = digits
        result[name] = entry
        print(f"\n{name}: fitted on {fit_plan}, checked on {held_plan}")
        print_table(rows, list(rows[0]))
        print(f"fitting traces: {entry['fitted']}")
        print(f"held-out traces: {entry['heldout']}")
    path = write_json(args.out, {"deployments": result, "levels": list(LEVELS)})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
