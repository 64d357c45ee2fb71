"""exit_steal against stress victims: paired gap to the true-exit reference, margin over knockoff.

Victims: ``digits_cnn``, ``digits_cnn_entropy``, ``digits_cnn_weak_early`` and ten seeded
draws of ``digits_cnn_random`` (exit mixes from balanced to ~90% at one exit). Per victim,
``exit_steal``, ``exit_steal_reference`` (reads the true exits) and ``knockoff`` run over
seeds 0-4 at the default budget and timing through the real grid runner (``undefended``).
Reported per victim: each attack's mean exit agreement, the mean paired difference
``reference - exit_steal`` with its 95% t-interval (target: at most 0.03), whether
``exit_steal`` is ever below ``knockoff`` (target: never, per seed), and how often
``exit_steal``'s estimator found the number of exits the victim really used on the
attacker's queries. Cells are cached under ``--out`` (a re-run reuses them).

Usage: ``python benchmarks/attack_victims.py [--seeds 0,1,2,3,4] [--draws 10] [--jobs 2]``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json
from harness.plugins.manager import make_plugin_manager
from harness.run.config import parse_overrides
from harness.run.runner import run_grid

ATTACKS = ("exit_steal", "exit_steal_reference", "knockoff")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "attack_victims"


def victims(draws: int) -> list[tuple[str, str, list[str]]]:
    """(label, registered name, extra overrides) of every victim in the benchmark."""
    fixed = [(n, n, []) for n in ("digits_cnn", "digits_cnn_entropy", "digits_cnn_weak_early")]
    return fixed + [(f"random_draw{d}", "digits_cnn_random",
                     [f"victim.digits_cnn_random.draw={d}"]) for d in range(draws)]


def run_victim(label: str, name: str, extra: list[str], seeds: str, jobs: int,
               out: Path) -> list[dict[str, Any]]:
    keys = [f"victims={name}", "defenses=none", f"attacks={','.join(ATTACKS)}",
            f"seeds={seeds}", f"out={out / label}", *extra]
    if jobs > 1:
        keys += ["executor=process", f"jobs={jobs}"]
    summary = run_grid(parse_overrides(keys), make_plugin_manager(), show_progress=False)
    return [json.loads(p.read_text()) for p in summary.result_paths if p.exists()]


def occupied_right(result: dict[str, Any]) -> bool | None:
    """Did the estimator find as many occupied exits as the victim used on the test split?"""
    diag = result["diagnostics"]
    est = diag.get("attack", {}).get("estimated_exit_histogram")
    true = diag.get("victim_exit_histogram")
    if est is None or true is None:
        return None
    return sum(c > 0 for c in est) == sum(c > 0 for c in true)


def summarise(label: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    agree: dict[str, dict[int, float]] = {a: {} for a in ATTACKS}
    occupied = []
    for r in results:
        if r["status"] != "ok":
            continue
        attack = r["components"]["attack"]["name"]
        agree[attack][r["seed"]] = r["metrics"]["exit_agreement"]
        if attack == "exit_steal":
            occupied.append(occupied_right(r))
    seeds = sorted(set(agree["exit_steal"]) & set(agree["exit_steal_reference"]))
    diffs = np.array([agree["exit_steal_reference"][s] - agree["exit_steal"][s] for s in seeds])
    half = (float(stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / math.sqrt(len(diffs)))
            if len(diffs) > 1 else float("nan"))
    below = [s for s in seeds if s in agree["knockoff"]
             and agree["exit_steal"][s] < agree["knockoff"][s]]
    row = {"victim": label, "seeds": len(seeds)}
    for attack in ATTACKS:
        vals = list(agree[attack].values())
        row[attack] = float(np.mean(vals)) if vals else None
    row.update({"gap_to_reference": float(diffs.mean()) if len(diffs) else None,
                "gap_ci95": [float(diffs.mean() - half), float(diffs.mean() + half)]
                if len(diffs) > 1 else None,
                "gap_ok": bool(len(diffs) and diffs.mean() <= 0.03),
                "below_knockoff_seeds": below,
                "occupied_right": float(np.mean([o for o in occupied if o is not None]))
                if any(o is not None for o in occupied) else None,
                "failed": sum(r["status"] != "ok" for r in results)})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--only", default=None, help="comma-separated victim labels")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    for label, name, extra in victims(args.draws):
        if args.only and label not in args.only.split(","):
            continue
        rows.append(summarise(label, run_victim(label, name, extra, args.seeds, args.jobs,
                                                args.out)))
        print(f"{label}: done ({time.perf_counter() - started:.0f}s)", flush=True)
    print_table(rows, ["victim", "seeds", *ATTACKS, "gap_to_reference", "gap_ok",
                       "below_knockoff_seeds", "occupied_right", "failed"])
    for row in rows:
        if row["gap_ci95"]:
            print(f"{row['victim']}: reference - exit_steal = {row['gap_to_reference']:+.3f} "
                  f"[{row['gap_ci95'][0]:+.3f}, {row['gap_ci95'][1]:+.3f}]")
    path = write_json(args.out / "summary.json", {"rows": rows, "seeds": args.seeds,
                                                  "wall_s": round(time.perf_counter() - started)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
