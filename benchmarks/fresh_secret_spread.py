"""How far a cell's metrics move under another secret: the basis of verify's
``fresh_secret`` tolerances (``harness/board/tolerance.py``).

A results folder made in the default ``secret=folder`` mode can be verified bit-exactly
only by whoever holds its secret; anyone else re-runs its cells under a fresh secret,
which trains the victim from another salted seed, permutes the splits otherwise and
draws other server streams. This runs the ``make run`` grid (digits victim; the timing
attack and knockoff; undefended and under three defenses; seed 0) under ``--secrets``
different named secrets and reports, per metric, the largest standard deviation over
cells and the largest difference between two secrets. The tolerance a fresh-secret
re-run is held to is the larger of 4.5 sigma (the difference of two draws has sigma
times sqrt(2); 4.5 sigma is 3.2 of its standard deviations) and the largest observed
difference, rounded up. Writes ``benchmarks/results/fresh_secret_spread.json``.

Usage: ``python benchmarks/fresh_secret_spread.py [--secrets 5] [--set KEY=VALUE ...]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json
from harness.io.provenance import machine_info
from harness.plugins.manager import make_plugin_manager
from harness.run.config import parse_overrides
from harness.run.runner import run_grid

GRID = ("victims=digits_cnn", "attacks=exit_steal,knockoff",
        "defenses=none,pad_constant,exit_noise,rounding", "seeds=0", "replicas=0")


def _metrics(paths) -> dict[str, dict[str, float]]:
    out = {}
    for path in paths:
        r = json.loads(Path(path).read_text())
        if r["status"] == "ok":
            name = r["components"]["attack"]["name"] + "/" + r["components"]["defense"]["name"]
            out[name] = {k: v for k, v in r["metrics"].items() if isinstance(v, int | float)}
    return out


def _round_up(x: float, step: float = 0.01) -> float:
    return round(math.ceil(x / step - 1e-9) * step, 6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="benchmarks/results/fresh_secret_spread.json")
    args = parser.parse_args()
    runs: list[dict[str, dict[str, float]]] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.secrets):
            os.environ["HARNESS_SECRET"] = f"fresh-secret-spread-{i}"
            spec = parse_overrides([*GRID, "executor=process", "jobs=2", *args.set,
                                    f"out={Path(tmp) / f'run{i}'}",
                                    f"cache_dir={Path(tmp) / 'cache'}"])
            runs.append(_metrics(run_grid(spec, make_plugin_manager(),
                                          show_progress=False).result_paths))
            print(f"secret {i}: {len(runs[-1])} ok cells, {time.perf_counter() - start:.0f} s",
                  flush=True)
    cells = sorted(set.intersection(*(set(r) for r in runs)))
    names = sorted({m for r in runs for c in cells for m in r[c]})
    rows = []
    for metric in names:
        sds, diffs = [], []
        for cell in cells:
            values = [r[cell][metric] for r in runs if metric in r[cell]]
            if len(values) >= 2:
                sds.append(statistics.stdev(values))
                diffs.append(max(values) - min(values))
        if not sds:
            continue
        rows.append({"metric": metric, "cells": len(sds), "max_sd": max(sds),
                     "median_sd": statistics.median(sds), "max_diff": max(diffs),
                     "tolerance": _round_up(max(4.5 * max(sds), max(diffs)))})
    print_table(rows, ["metric", "cells", "median_sd", "max_sd", "max_diff", "tolerance"])
    write_json(args.out, {"grid": list(GRID), "set": args.set, "secrets": args.secrets,
                          "cells": cells, "machine": machine_info("cpu").__dict__,
                          "wall_s": round(time.perf_counter() - start, 1), "metrics": rows,
                          "runs": runs})


if __name__ == "__main__":
    main()
