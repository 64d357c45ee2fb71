"""What isolation costs: the ``make run`` grid with ``isolation=process`` against ``none``.

Trains the grid's victims once (a warm-up run into a scratch folder, shared cache), then
runs the default grid (``victims=digits_cnn attacks=all defenses=all seeds=0``) into
fresh folders, alternating the two modes ``--repeats`` times, and reports wall time per
mode, the overhead of isolation (target: under 10%), and whether the metrics of every
cell are identical in both modes (they must be: isolation changes who computes, not what).
Writes ``benchmarks/results/isolation_overhead.json``.

Usage: ``python benchmarks/isolation_overhead.py [--repeats 2] [--set KEY=VALUE ...]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json
from harness.plugins.manager import make_plugin_manager
from harness.run.config import parse_overrides
from harness.run.runner import run_grid

GRID = ("victims=digits_cnn", "attacks=all", "defenses=all", "seeds=0")


def _metrics(paths) -> dict[str, dict]:
    out = {}
    for path in paths:
        r = json.loads(Path(path).read_text())
        out[r["components"]["attack"]["name"] + "/" + r["components"]["defense"]["name"]] = (
            r["metrics"] if r["status"] == "ok" else {"failed": r["error"]["message"][:200]})
    return out


def _run(root: Path, name: str, keys: list[str]) -> tuple[float, dict[str, dict]]:
    spec = parse_overrides([*GRID, *keys, f"out={root / name}", f"cache_dir={root / 'cache'}"])
    start = time.perf_counter()
    summary = run_grid(spec, make_plugin_manager(), show_progress=False)
    return time.perf_counter() - start, _metrics(summary.result_paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="benchmarks/results/isolation_overhead.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="isolation-bench-") as tmp:
        root = Path(tmp)
        _run(root, "warmup", [*args.set, "attacks=knockoff", "defenses=none"])
        walls: dict[str, list[float]] = {"none": [], "process": []}
        metrics: dict[str, dict] = {}
        for i in range(args.repeats):
            for mode in ("none", "process"):
                wall, metrics[mode] = _run(root, f"{mode}{i}", [*args.set, f"isolation={mode}"])
                walls[mode].append(wall)
    rows = [{"isolation": mode, "runs": len(w), "median_wall_s": statistics.median(w),
             "min_wall_s": min(w), "max_wall_s": max(w)} for mode, w in walls.items()]
    overhead = statistics.median(walls["process"]) / statistics.median(walls["none"]) - 1
    same = metrics["none"] == metrics["process"]
    print_table(rows, ("isolation", "runs", "median_wall_s", "min_wall_s", "max_wall_s"))
    print(f"isolation overhead on the make-run grid: {overhead:+.1%} (target < +10%); "
          f"identical metrics in both modes: {same}")
    write_json(args.out, {"grid": list(GRID), "extra": args.set, "rows": rows,
                          "overhead": overhead, "identical_metrics": same,
                          "cells": len(metrics["none"])})


if __name__ == "__main__":
    main()
