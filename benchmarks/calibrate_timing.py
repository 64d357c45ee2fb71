"""Calibrate the realistic default timing from the tuned live-trace corpus.

Two things a live CPU trace shows and an affine model lacks:

* **the per-query shape**: log latency minus its exit's median log latency, pooled over
  the quiet tuned traces (one serving thread, no background process) - a bulk, a
  shoulder and a sparse heavy right tail that every exit shares. Its quantile function at
  :data:`LEVELS` becomes ``harness.timing.models.REALISTIC_SHAPE``;
* **how far exits sit from affine in cost**: per trace, the per-exit median latencies
  are fitted by ``a + b * cost_fraction`` (least squares); the relative residuals' spread
  becomes ``RealisticTiming.deviation``.

Only tuned traces are read (the held-out ones stay unseen). Writes
``benchmarks/results/calibrate_timing.json`` and prints the table as Python.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import write_json
from benchmarks.latency_corpus import load_corpus
from harness.plugins.registry import load_registry
from harness.plugins.toolbox import Toolbox

LEVELS = np.concatenate([[0.0005, 0.002], np.linspace(0.01, 0.99, 99), [0.998, 0.9995]])
MIN_PER_EXIT = 20


def cost_fraction(tools: Toolbox, trace: dict) -> np.ndarray:
    net = tools.new_network("small_cnn", tuple(trace["input_shape"]), 10, trace["num_exits"],
                            trace["seed"], width=trace["width"])
    return np.asarray(net.cost_fraction)


def main() -> None:
    tools = Toolbox(load_registry())
    residuals, deviations, used = [], [], []
    for trace in load_corpus(("tuned",)):
        y, exits, k = np.log(trace["latency_s"]), trace["exits"], trace["num_exits"]
        med = np.array([np.median(y[exits == e]) if (exits == e).sum() >= MIN_PER_EXIT
                        else np.nan for e in range(k)])
        ok = ~np.isnan(med)
        design = np.column_stack([np.ones(k), cost_fraction(tools, trace)])[ok]
        coef = np.linalg.lstsq(design, np.exp(med[ok]), rcond=None)[0]
        deviations.append(np.exp(med[ok]) / (design @ coef) - 1.0)
        if trace["threads"] == 1 and trace["background"] == "none":
            residuals.append((y - med[exits])[ok[exits]])
            used.append(trace["name"])
    pooled = np.concatenate(residuals)
    shape = np.quantile(pooled, LEVELS)
    shape -= np.interp(0.5, LEVELS, shape)
    dev = np.concatenate(deviations)
    robust_dev = float(1.4826 * np.median(np.abs(dev - np.median(dev))))
    result = {"traces": used, "samples": len(pooled), "levels": LEVELS.tolist(),
              "shape": shape.tolist(), "affine_deviation_sd": float(dev.std()),
              "affine_deviation_robust_sd": robust_dev}
    path = write_json(Path(__file__).resolve().parent / "results" / "calibrate_timing.json",
                      result)
    print(f"{len(used)} quiet traces, {len(pooled)} queries; affine deviation sd "
          f"{dev.std():.3f} (robust {robust_dev:.3f})")
    print("REALISTIC_LEVELS = (" + ", ".join(f"{v:.4g}" for v in LEVELS) + ")")
    print("REALISTIC_SHAPE = (" + ", ".join(f"{v:.4f}" for v in shape) + ")")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
