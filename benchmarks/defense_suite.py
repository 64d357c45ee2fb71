"""Every defense against every real attack: worst case, leakage, costs, and the frontier.

Runs the harness grid (isolated cells, ``realistic`` timing, the default budget) on the
default digits victim with several seeds and on the other digits victims with seed 0,
against every registered non-reference attack (the adaptive variants included) and
every registered defense, then prints one table per victim, one row per defense:

* the worst-case exit agreement over real attacks and the attack that reached it;
* leakage bits against the served and the intended exit;
* the Bayes exit accuracy of the benign latencies beside chance (majority-exit rate);
* every cost (accuracy drop, refusal rate, latency overhead p50/p99, compute overhead,
  early-exit speed-up retained), as means over the defense's cells.

It writes ``benchmarks/results/defense_suite.json`` and a PNG of the trade-off: leakage
(bits, served exit) and worst-case exit agreement against the p50 latency overhead, per
victim, with the Pareto front (lower is better on both axes) marked. Cells are kept
under ``--out`` and reused, so an interrupted run resumes.

    python benchmarks/defense_suite.py                     # the full benchmark (long)
    python benchmarks/defense_suite.py --seeds 0 --victims digits_cnn   # one victim, one seed
    python benchmarks/defense_suite.py --no-run --out DIR  # tables and plot of finished cells
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_json

from harness.board.leaderboard import build_leaderboard
from harness.board.ranking import pareto_front
from harness.plugins.manager import make_plugin_manager
from harness.plugins.registry import Registry, load_registry
from harness.run.config import parse_overrides
from harness.run.runner import run_grid

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_VICTIM = "digits_cnn"
OTHER_VICTIMS = ("digits_cnn_entropy", "digits_cnn_random", "digits_cnn_weak_early")
COLUMNS = ("defense", "worst_attack", "worst_ea", "bits", "bits_intended", "bayes", "chance",
           "bayes_int", "chance_int", "acc_drop", "refused", "lat_p50", "lat_p99", "compute",
           "speedup", "cells")


def reference_attacks(registry: Registry) -> set[str]:
    """Attacks marked ``reference`` (upper bounds, never ranked)."""
    return {n for n in registry.names("attack") if registry.get("attack", n).cls.reference}


def real_attacks(registry: Registry) -> list[str]:
    reference = reference_attacks(registry)
    return [n for n in registry.names("attack") if n not in reference]


def run(victims: list[str], seeds: list[int], others_seed: int | None, out: Path,
        jobs: int, extra: list[str], attacks: str | None = None,
        defenses: str = "all") -> tuple[dict[str, Any], float, list[float]]:
    """Run the grids; returns the leaderboard, the wall time and each cell's wall time."""
    registry = load_registry()
    attacks = attacks or ",".join(real_attacks(registry))
    grids = [(victims[:1], seeds)]
    if others_seed is not None and len(victims) > 1:
        grids.append((victims[1:], [others_seed]))
    start = time.perf_counter()
    cell_walls: list[float] = []
    for names, grid_seeds in grids:
        spec = parse_overrides([f"victims={','.join(names)}", f"attacks={attacks}",
                                f"defenses={defenses}", f"seeds={','.join(map(str, grid_seeds))}",
                                f"out={out}", "executor=process", f"jobs={jobs}", *extra])
        summary = run_grid(spec, make_plugin_manager(), show_progress=True)
        for path in summary.result_paths:
            result = json.loads(path.read_text())
            cell_walls.append(float(result["wall_time_s"]))
    return build_leaderboard(out, reference_attacks(registry)), time.perf_counter() - start, \
        cell_walls


def defense_rows(board: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for e in board["defense_ranking"]:
        c = e["costs"]
        rows.append({
            "victim": e["victim"], "defense": e["defense"], "worst_attack": e["worst_attack"],
            "worst_ea": e["worst_exit_agreement"], "worst_ea_ci95": e["worst_exit_agreement_ci95"],
            "seeds": e["seeds"], "bits": c.get("leakage_bits"),
            "bits_intended": c.get("leakage_bits_intended"),
            "bayes": c.get("bayes_exit_accuracy"), "chance": c.get("chance_exit_accuracy"),
            "bayes_int": c.get("bayes_exit_accuracy_intended"),
            "chance_int": c.get("chance_exit_accuracy_intended"),
            "acc_drop": c.get("benign_accuracy_drop"), "refused": c.get("benign_refusal_rate"),
            "lat_p50": c.get("latency_overhead_p50"), "lat_p99": c.get("latency_overhead_p99"),
            "compute": c.get("compute_overhead"), "speedup": c.get("speedup_retained"),
            "cells": e["cells"], "costs_ci95": e["costs_ci95"]})
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Leakage and worst-case agreement against latency overhead, Pareto fronts marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    victims = sorted({r["victim"] for r in rows})
    fig, axes = plt.subplots(len(victims), 2, figsize=(12, 4.2 * len(victims)), squeeze=False)
    for row_axes, victim in zip(axes, victims, strict=True):
        mine = [r for r in rows if r["victim"] == victim and r["lat_p50"] is not None]
        for ax, key, label in ((row_axes[0], "bits", "leakage (bits, served exit)"),
                               (row_axes[1], "worst_ea", "worst-case exit agreement")):
            pts = [(r["lat_p50"], r[key]) for r in mine if r[key] is not None]
            named = [r for r in mine if r[key] is not None]
            front = set(pareto_front(pts))
            for i, ((x, y), r) in enumerate(zip(pts, named, strict=True)):
                ax.scatter([x], [y], color="tab:red" if i in front else "tab:blue", zorder=3)
                ax.annotate(r["defense"], (x, y), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
            ordered = sorted(pts[i] for i in front)
            if ordered:
                ax.step([p[0] for p in ordered], [p[1] for p in ordered], where="post",
                        color="tab:red", alpha=0.6, label="Pareto front")
                ax.legend(fontsize=8)
            ax.set_xlabel("latency overhead p50 (benign clients)")
            ax.set_ylabel(label)
            ax.set_title(victim)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victims", default=",".join((DEFAULT_VICTIM, *OTHER_VICTIMS)),
                        help="the first gets --seeds, the others --others-seed")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--others-seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--attacks", default=None, help="default: every real attack")
    parser.add_argument("--defenses", default="all")
    parser.add_argument("--no-run", action="store_true",
                        help="only aggregate the cells already under --out (no new cells)")
    parser.add_argument("--out", type=Path, default=Path("results/defense_suite"))
    parser.add_argument("--json", type=Path, default=RESULTS / "defense_suite.json")
    parser.add_argument("--png", type=Path, default=RESULTS / "defense_frontier.png")
    parser.add_argument("extra", nargs="*", help="further harness run keys (e.g. budget=300)")
    args = parser.parse_args(argv)
    victims = [v for v in args.victims.split(",") if v]
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.no_run:
        registry = load_registry()
        board, wall = build_leaderboard(args.out, reference_attacks(registry)), 0.0
        cell_walls = [float(json.loads(p.read_text())["wall_time_s"])
                      for p in sorted((args.out / "cells").rglob("*.json"))]
    else:
        board, wall, cell_walls = run(victims, seeds, args.others_seed, args.out, args.jobs,
                                      args.extra, args.attacks, args.defenses)
    rows = defense_rows(board)
    for victim in sorted({r["victim"] for r in rows}):
        print(f"\n{victim}")
        print_table([r for r in rows if r["victim"] == victim], COLUMNS)
    cell_walls.sort()
    if args.no_run:  # what the finished cells cover, not what the options would have run
        victims = sorted({r["victim"] for r in rows})
        seeds = sorted({s for r in rows for s in r["seeds"]})
    summary = {"wall_s": wall, "cells": len(cell_walls), "aggregated_only": args.no_run,
               "cell_wall_median_s": cell_walls[len(cell_walls) // 2] if cell_walls else None,
               "cells_failed": board["cells"]["failed"], "victims": victims, "seeds": seeds,
               "others_seed": args.others_seed, "extra": args.extra,
               "attacks": args.attacks or "every real attack", "defenses": args.defenses}
    write_json(args.json, {"summary": summary, "rows": rows})
    png = plot(rows, args.png)
    print(f"\n{summary}\njson: {args.json}\nplot: {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
