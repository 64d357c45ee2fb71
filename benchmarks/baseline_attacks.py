"""The baseline stealing attacks beside exit_steal and the replica agreement, and budget curves.

Part 1, one table per digits victim (undefended, ``realistic`` timing, one budget for
all, seeds 0-2 by default): every real attack's accuracy, fidelity, exit agreement,
Cohen's kappa of the exits, efficiency gap and queries used (mean and 95% t-interval
over seeds), the final-exit-only fidelity and efficiency gap (the substitute with no
early exit, scored on the test split: ``final_exit_fidelity``, ``final_exit_efficiency_gap``),
and the victim's replica agreement (retrained replicas, the victim's own calibration rule)
as the last row. ``knockoff`` runs with its default ``sampling=adaptive``; its
``sampling=random`` is ``function_only`` (a test asserts identical weights).
The victims are ``digits_cnn`` (default), ``digits_cnn_random`` draw
``--unbalanced-draw`` (an unbalanced exit mix), ``digits_cnn_weak_early`` and
``digits_cnn_entropy``.

Part 2, the budget sweep: ``knockoff``, ``function_only`` and ``exit_steal`` at budgets
50/100/250/500 on ``digits_cnn``, undefended and under one timing defense
(``--sweep-defense``, ``pad_bucket`` by default): exit agreement and fidelity against
queries, as a PNG with 95% intervals.

Cells go through the real grid runner and are kept under ``--out`` (re-runs reuse them).
Writes ``benchmarks/results/baseline_attacks.json`` and ``budget_sweep.png``.

    python benchmarks/baseline_attacks.py                      # both parts (long)
    python benchmarks/baseline_attacks.py --skip-sweep --seeds 0
    python benchmarks/baseline_attacks.py --no-run             # aggregate finished cells
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, repo_relative, write_json
from harness.board.leaderboard import build_leaderboard
from harness.board.replica_agreement import replica_section
from harness.metrics.stats import mean_ci
from harness.plugins.manager import make_plugin_manager
from harness.run.config import parse_overrides
from harness.run.runner import run_grid

RESULTS = Path(__file__).resolve().parent / "results"
ATTACKS = ("knockoff", "jbda", "activethief", "function_only", "exit_steal")
SWEEP_ATTACKS = ("knockoff", "function_only", "exit_steal")
BUDGETS = (50, 100, 250, 500)
METRICS = ("accuracy", "fidelity", "exit_agreement", "exit_kappa", "efficiency_gap",
           "queries_used")
COLUMNS = ("attack", "n", "accuracy", "fidelity", "exit_agreement", "exit_agreement_ci95",
           "exit_kappa", "efficiency_gap", "queries_used", "final_only_fidelity",
           "final_only_gap")


def victims(unbalanced_draw: int) -> list[tuple[str, str, list[str]]]:
    """(label, registered victim, extra keys) of the four digits victims."""
    return [("digits_cnn", "digits_cnn", []),
            (f"unbalanced (random draw {unbalanced_draw})", "digits_cnn_random",
             [f"victim.digits_cnn_random.draw={unbalanced_draw}"]),
            ("weak_early", "digits_cnn_weak_early", []),
            ("entropy", "digits_cnn_entropy", [])]


def run_cells(keys: list[str], jobs: int) -> list[dict[str, Any]]:
    """Run (or reuse) one grid; the results of its cells."""
    if jobs > 1:
        keys = [*keys, "executor=process", f"jobs={jobs}"]
    summary = run_grid(parse_overrides(keys), make_plugin_manager(), show_progress=True)
    return [json.loads(p.read_text()) for p in summary.result_paths if p.exists()]


def load_cells(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "cells").rglob("*.json"))] \
        if (out / "cells").exists() else []


def mean_and_ci(values: list[Any]) -> tuple[float | None, list[float] | None]:
    """Mean and 95% t-interval over seeds (:func:`harness.metrics.stats.mean_ci`; the
    interval is None for fewer than two values)."""
    stat = mean_ci(values)
    return stat["mean"], (stat["ci95"] if stat["n"] >= 2 else None)


def attack_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per attack label: means (and the exit agreement's interval) over seeds."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if r["status"] == "ok":
            groups[r["components"]["attack"].get("label") or
                   r["components"]["attack"]["name"]].append(r)
    rows = []
    for label, cells in sorted(groups.items()):
        row: dict[str, Any] = {"attack": label, "n": len(cells),
                               "seeds": sorted(c["seed"] for c in cells)}
        for m in METRICS:
            mean, ci = mean_and_ci([c["metrics"].get(m) for c in cells])
            row[m], row[f"{m}_ci95"] = mean, ci
        row["final_only_fidelity"] = mean_and_ci(
            [c["metrics"].get("final_exit_fidelity") for c in cells])[0]
        row["final_only_gap"] = mean_and_ci(
            [c["metrics"].get("final_exit_efficiency_gap") for c in cells])[0]
        rows.append(row)
    failed = sorted({r["components"]["attack"]["name"] for r in results if r["status"] != "ok"})
    for name in failed:
        rows.append({"attack": f"{name} (FAILED)", "n": 0})
    return rows


def replica_row(board: dict[str, Any], victim: str) -> dict[str, Any] | None:
    """The victim's replica agreement from the leaderboard, as a table row (None if absent)."""
    for entry in replica_section(board):
        if entry["victim"] != victim or entry["status"] != "ok":
            continue
        row: dict[str, Any] = {"attack": "replica agreement", "n": entry["n"],
                               "seeds": entry["seeds"]}
        for m, stat in entry["metrics"].items():
            row[m], row[f"{m}_ci95"] = stat.get("mean"), stat.get("ci95")
        return row
    return None


def tables(args: argparse.Namespace) -> list[dict[str, Any]]:
    out_tables = []
    for label, name, extra in victims(args.unbalanced_draw):
        out = args.out / "tables" / name
        if args.no_run:
            results = load_cells(out)
        else:
            results = run_cells([f"victims={name}", f"attacks={','.join(ATTACKS)}",
                                 "defenses=none", f"seeds={args.seeds}", f"budget={args.budget}",
                                 f"out={out}", *extra], args.jobs)
        rows = attack_rows(results)
        if results:
            board = build_leaderboard(out, {"exit_steal_reference"})
            replica = replica_row(board, name)
            if replica is not None:
                rows.append(replica)
        print(f"\n{label} ({name}), budget {args.budget}, undefended")
        print_table(rows, COLUMNS)
        out_tables.append({"victim": label, "registered": name, "rows": rows,
                           "wall_s": sum(r.get("wall_time_s", 0) for r in results)})
    return out_tables


def sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for defense in ("none", args.sweep_defense):
        for budget in args.budgets:
            out = args.out / "sweep" / defense / f"budget{budget}"
            results = load_cells(out) if args.no_run else run_cells(
                ["victims=digits_cnn", f"attacks={','.join(SWEEP_ATTACKS)}",
                 f"defenses={defense}", f"seeds={args.sweep_seeds}", f"budget={budget}",
                 f"out={out}"], args.jobs)
            for row in attack_rows(results):
                rows.append({"defense": defense, "budget": budget, **row})
    print("\nbudget sweep (digits_cnn)")
    print_table(rows, ("defense", "budget", "attack", "n", "exit_agreement", "fidelity",
                       "efficiency_gap", "queries_used"))
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Exit agreement and fidelity against queries, one panel pair per defense."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    defenses = list(dict.fromkeys(r["defense"] for r in rows))
    fig, axes = plt.subplots(len(defenses), 2, figsize=(11, 4 * len(defenses)), squeeze=False)
    for row_axes, defense in zip(axes, defenses, strict=True):
        for ax, metric in zip(row_axes, ("exit_agreement", "fidelity"), strict=True):
            for attack in SWEEP_ATTACKS:
                pts = sorted((r["budget"], r.get(metric), r.get(f"{metric}_ci95")) for r in rows
                             if r["defense"] == defense and r["attack"] == attack
                             and r.get(metric) is not None)
                if not pts:
                    continue
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                line = ax.plot(xs, ys, marker="o", label=attack)[0]
                lo = [p[2][0] if p[2] else p[1] for p in pts]
                hi = [p[2][1] if p[2] else p[1] for p in pts]
                ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(BUDGETS, [str(b) for b in BUDGETS])
            ax.set_xlabel("queries (budget)")
            ax.set_ylabel(metric.replace("_", " "))
            ax.set_title(f"digits_cnn, defense={defense}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--unbalanced-draw", type=int, default=3)
    parser.add_argument("--sweep-seeds", default="0,1,2")
    parser.add_argument("--budgets", type=lambda s: [int(b) for b in s.split(",")],
                        default=list(BUDGETS))
    parser.add_argument("--sweep-defense", default="pad_bucket")
    parser.add_argument("--skip-tables", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-run", action="store_true", help="aggregate finished cells only")
    parser.add_argument("--out", type=Path, default=Path("results/baseline_attacks"))
    parser.add_argument("--json", type=Path, default=RESULTS / "baseline_attacks.json")
    parser.add_argument("--png", type=Path, default=RESULTS / "budget_sweep.png")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report: dict[str, Any] = {"budget": args.budget, "seeds": args.seeds,
                              "sweep_seeds": args.sweep_seeds, "budgets": args.budgets,
                              "sweep_defense": args.sweep_defense}
    if not args.skip_tables:
        report["tables"] = tables(args)
    if not args.skip_sweep:
        report["sweep"] = sweep(args)
        report["plot"] = repo_relative(plot(report["sweep"], args.png))
    report["wall_s"] = round(time.perf_counter() - started)
    print(f"\njson: {write_json(args.json, report)}  ({report['wall_s']} s)")
    if "plot" in report:
        print(f"plot: {report['plot']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
