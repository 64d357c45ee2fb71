"""Do estimators rank the same under a timing model as on held-out live traces?

For every held-out corpus trace, a synthetic twin is drawn from each modelled timing
(``realistic``, the default, and the clean ``analytic``) with the trace's exit mix, size
and network cost fractions, true exits known. Every registered estimator (K given) is
scored on the live traces and on each model's twins; the table gives each estimator's
mean accuracy per source and the Spearman rank correlation of the estimators' ordering
under each model with their ordering on the live traces. The held-out traces were never
used to calibrate the realistic model.

Usage: ``python benchmarks/timing_fidelity.py``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json
from benchmarks.latency_corpus import load_corpus
from harness.metrics.leakage import bayes_exit_accuracy
from harness.plugins.registry import load_registry
from harness.plugins.toolbox import Toolbox
from harness.timing.models import AnalyticTiming, RealisticTiming

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "timing_fidelity.json"
MODELS = {"realistic": RealisticTiming(), "analytic": AnalyticTiming()}


def twin(trace: dict, model, cost: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([trace["seed"], 77])
    exits = rng.choice(trace["num_exits"], size=trace["n"], p=trace["exit_weights"])
    return model.latencies(exits, cost, rng), exits


def main() -> None:
    started = time.perf_counter()
    registry = load_registry()
    tools = Toolbox(registry)
    estimators = [e for e in registry.entries("exit_estimator") if not e.cls.reference]
    sources: dict[str, list[tuple[np.ndarray, np.ndarray, int]]] = {"live": []}
    bounds: dict[str, list[float]] = {"live": []}
    for trace in load_corpus(("heldout",)):
        k = trace["num_exits"]
        cost = tools.new_network("small_cnn", tuple(trace["input_shape"]), 10, k, trace["seed"],
                                 width=trace["width"]).cost_fraction
        sources["live"].append((trace["latency_s"], trace["exits"], k))
        bounds["live"].append(trace["bayes_optimal"])
        for name, model in MODELS.items():
            lat, exits = twin(trace, model, cost)
            sources.setdefault(name, []).append((lat, exits, k))
            bounds.setdefault(name, []).append(bayes_exit_accuracy(lat, exits))
    rows, means = [], {}
    for entry in estimators:
        row = {"estimator": entry.name}
        for source, traces in sources.items():
            accs = [float(np.mean(entry.cls().estimate(lat, k, np.random.default_rng(0)).exits
                                  == exits)) for lat, exits, k in traces]
            row[source] = float(np.mean(accs))
            means.setdefault(source, []).append(row[source])
        rows.append(row)
    rows.append({"estimator": "bayes bound", **{s: float(np.mean(b)) for s, b in bounds.items()}})
    ranks = {name: float(spearmanr(means["live"], means[name]).statistic) for name in MODELS}
    print_table(rows, ["estimator", "live", *MODELS])
    print("\nSpearman rank correlation with the live held-out ordering: "
          + ", ".join(f"{k} {v:.2f}" for k, v in ranks.items()))
    path = write_json(DEFAULT_OUT, {"rows": rows, "spearman": ranks,
                                    "wall_s": round(time.perf_counter() - started, 1)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
