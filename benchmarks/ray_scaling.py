"""Grid wall time: serial vs process vs Ray (1 and 2 local workers), and per-cell costs.

Runs one small digits grid (``victims=digits_cnn defenses=none attacks=knockoff,exit_steal
seeds=0,1`` with a small budget) into a fresh ``out=`` per executor, after training the
victim once into a shared cache (so no run pays for it). Reports each executor's wall
time and speed-up against serial, the cells' own compute time (``wall_time_s`` in the
results), and what the driver spends per cell outside compute: claiming the cell,
writing its result atomically, reading it back on resume. Writes
``benchmarks/results/ray_scaling.json`` and prints a table.

Usage: ``python benchmarks/ray_scaling.py [--budget N] [--seeds 0,1] [--skip-ray]``
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json
from harness.io.claims import try_claim
from harness.io.results import load_result
from harness.io.signing import FolderTrust, open_run_manifest, trust_for
from harness.plugins.manager import make_plugin_manager
from harness.plugins.registry import load_registry
from harness.run.config import parse_overrides
from harness.run.grid import config_hash, expand_grid
from harness.run.runner import run_grid, write_result

OUT = Path(__file__).resolve().parent / "results" / "ray_scaling.json"
MODES = (("serial", 1), ("process", 1), ("process", 2), ("ray", 1), ("ray", 2))


def grid_args(root: Path, budget: int, seeds: str, executor: str, jobs: int) -> list[str]:
    return ["victims=digits_cnn", "defenses=none", "attacks=knockoff,exit_steal", f"seeds={seeds}",
            f"budget={budget}", f"executor={executor}", f"jobs={jobs}",
            f"out={root / f'{executor}-{jobs}'}", f"cache_dir={root / 'cache'}"]


def time_grid(args: list[str]) -> dict[str, Any]:
    """Run a grid; its wall time and the cells' own compute times."""
    start = time.perf_counter()
    summary = run_grid(parse_overrides(args), make_plugin_manager(), show_progress=False)
    wall = time.perf_counter() - start
    results = [load_result(p, trust_for(p)) for p in summary.result_paths]
    if summary.failed or any(r is None for r in results):
        raise SystemExit(f"grid {args} had failed cells; fix them before benchmarking")
    return {"wall_s": wall, "cells": summary.total,
            "cell_compute_s": [r["wall_time_s"] for r in results]}


def driver_cost_per_cell(result_path: Path, repeats: int = 50) -> dict[str, float]:
    """Seconds the driver spends per cell outside compute: claim, atomic write, resume read."""
    result = load_result(result_path, trust_for(result_path))
    registry = load_registry()
    spec = parse_overrides(["victims=digits_cnn", "defenses=none", "attacks=knockoff"])
    cell = expand_grid(spec, registry)[0]
    config_hash(cell, registry)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = open_run_manifest(Path(tmp))
        trust = FolderTrust.load(Path(tmp), keys=[manifest.key.public])
        timings: dict[str, list[float]] = {"claim_release_s": [], "write_s": [], "read_s": [],
                                           "config_hash_s": []}
        for i in range(repeats):
            path = Path(tmp) / "cells" / "v" / "d" / "a" / f"seed{i}-x.json"
            t0 = time.perf_counter()
            claim = try_claim(path)
            claim.release()
            t1 = time.perf_counter()
            write_result(path, copy.deepcopy(result), cell, registry, manifest=manifest)
            t2 = time.perf_counter()
            load_result(path, trust)
            t3 = time.perf_counter()
            config_hash(cell, registry)
            t4 = time.perf_counter()
            for key, value in zip(timings, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                timings[key].append(value)
    costs = {k: statistics.median(v) for k, v in timings.items()}
    costs["total_s"] = sum(costs.values())
    costs["result_bytes"] = len(json.dumps(result))
    return costs


def scaling_note(rows: list[dict[str, Any]], driver: dict[str, float], cpus: int) -> str:
    """The expected scaling beyond this machine, on paper, from the measured figures."""
    serial = next(r for r in rows if r["executor"] == "serial")
    ray1 = next((r for r in rows if r["executor"] == "ray" and r["jobs"] == 1), None)
    cell = serial["mean_cell_compute_s"]
    per_cell_driver = driver["total_s"]
    ceiling = int(cell / per_cell_driver)
    ray_overhead = f"{ray1['overhead_per_cell_s']:.1f} s" if ray1 else "n/a"
    two = next((r for r in rows if r["executor"] == "process" and r["jobs"] == 2), None)
    grew = (f"; a cell's compute went from {cell:.1f} s to {two['mean_cell_compute_s']:.1f} s "
            "with two at once") if two else ""
    return (
        f"On this {cpus}-CPU machine a cell already keeps every core busy (torch and numpy use "
        f"all threads{grew}), so running two at once only splits the same CPUs: no executor gains "
        f"much over serial here, and the process executor also pays each cell's start (its "
        f"isolation fork server imports torch and the plugins), while Ray reuses its workers "
        f"({ray_overhead} per cell over compute "
        f"at one worker, mostly the instance's start and the workers' first imports, paid once). "
        f"With N workers on separate cores or nodes, cells are independent, so the wall time "
        f"is about ceil(cells / N) x {cell:.1f} s plus a fixed start (a local instance ~5 s, "
        f"none when joining a cluster; each worker's first import ~10 s). The driver is serial: "
        f"it spends {per_cell_driver * 1e3:.0f} ms per cell (claim {driver['claim_release_s'] * 1e3:.1f} ms, "
        f"atomic write {driver['write_s'] * 1e3:.1f} ms, schema-checked read "
        f"{driver['read_s'] * 1e3:.0f} ms, config hash {driver['config_hash_s'] * 1e3:.0f} ms), "
        f"so it keeps up with about {ceiling} workers busy on cells of this size before it "
        f"becomes the bottleneck; CIFAR-size cells (minutes) move that ceiling into the "
        f"thousands. Beyond one machine the victim cache must be on shared storage (otherwise "
        f"each node trains its own copy once) and each result comes back as a "
        f"~{driver['result_bytes'] / 1e3:.0f} kB object.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--skip-ray", action="store_true", help="only serial and process")
    parser.add_argument("--out", type=Path, default=OUT)
    opts = parser.parse_args()
    modes = [m for m in MODES if not (opts.skip_ray and m[0] == "ray")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        warm = time_grid([*grid_args(root, opts.budget, "0", "serial", 1), "attacks=knockoff",
                          f"out={root / 'warm'}"])
        print(f"victim trained and cached ({warm['wall_s']:.1f} s)", flush=True)
        for executor, jobs in modes:
            got = time_grid(grid_args(root, opts.budget, opts.seeds, executor, jobs))
            compute = got["cell_compute_s"]
            rows.append({"executor": executor, "jobs": jobs, "cells": got["cells"],
                         "wall_s": round(got["wall_s"], 2),
                         "mean_cell_compute_s": round(statistics.mean(compute), 2),
                         "sum_cell_compute_s": round(sum(compute), 2)})
            print(f"{executor} jobs={jobs}: {got['wall_s']:.1f} s", flush=True)
        some_result = next((root / "serial-1" / "cells").rglob("*.json"))
        driver = driver_cost_per_cell(some_result)
    serial = next(r for r in rows if r["executor"] == "serial")["wall_s"]
    for row in rows:
        row["speedup_vs_serial"] = round(serial / row["wall_s"], 3)
        # what running a cell costs beyond its compute, per cell, in this executor
        row["overhead_per_cell_s"] = round((row["wall_s"] * row["jobs"] - row["sum_cell_compute_s"])
                                           / row["cells"], 2)
    print_table(rows, ["executor", "jobs", "cells", "wall_s", "speedup_vs_serial",
                       "mean_cell_compute_s", "overhead_per_cell_s"])
    print("driver cost per cell (median): " + ", ".join(
        f"{k}={v * 1e3:.2f} ms" if k.endswith("_s") else f"{k}={v}" for k, v in driver.items()))
    write_json(opts.out, {"grid": {"victims": "digits_cnn", "defenses": "none",
                                   "attacks": "knockoff,exit_steal", "seeds": opts.seeds,
                                   "budget": opts.budget},
                          "machine": {"cpus": os.cpu_count()}, "rows": rows,
                          "driver_cost_per_cell": driver,
                          "expected_scaling": scaling_note(rows, driver, os.cpu_count() or 1)})
    print("\n" + scaling_note(rows, driver, os.cpu_count() or 1))
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
