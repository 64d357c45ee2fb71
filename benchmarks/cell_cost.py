"""What a cell costs, before and after a change of defaults, with the quality rule.

A change that makes cells cheaper must not make attacks weaker. This benchmark pairs,
per attack and seed, the cells of two code versions (the ``git_commit`` every cell
records) in one results folder - one folder, so both versions face the same victim - and
reports per attack:

* the p50 and p90 cell wall time of each version;
* the paired difference (after - before) of exit agreement and of fidelity, mean and
  95% t-interval over the shared seeds, and the worst seed;
* whether the change is non-inferior: both intervals lie above ``--margin`` (-0.02).

How the figures in ``benchmarks/results/cell_cost.json`` were made (2 quiet cores; nothing
else ran beside the cells)::

    git worktree add /tmp/before BEFORE_COMMIT     # the old defaults
    (cd /tmp/before && make install && .venv/bin/python benchmarks/cell_cost.py run --out DIR)
    python benchmarks/cell_cost.py run --out DIR    # this checkout: the new defaults
    python benchmarks/cell_cost.py compare DIR --before BEFORE_COMMIT --after AFTER_COMMIT

``run`` is the grid runner (finished cells are reused; ``isolation=none``, so the times
are the cells' own work, not the confinement's; two cells side by side).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, write_json
from harness.metrics.stats import mean_ci

RESULTS = Path(__file__).resolve().parent / "results"
ATTACKS = ("exit_steal", "exit_steal_profiled", "exit_steal_bocpd", "exit_steal_kde",
           "exit_steal_ruptures", "exit_steal_labels", "exit_steal_noisy",
           "exit_steal_perturb", "exit_steal_repeat", "knockoff", "function_only",
           "activethief", "jbda")
METRICS = ("exit_agreement", "fidelity")
COLUMNS = ("attack", "defense", "n", "p50_before_s", "p50_after_s", "p90_before_s",
           "p90_after_s", "exit_agreement_diff", "exit_agreement_ci95", "fidelity_diff",
           "fidelity_ci95", "worst_seed_ea", "non_inferior")


def run(out: str, attacks: list[str], seeds: str, defenses: str, jobs: int) -> None:
    """Run the current checkout's defaults into ``out`` through ``harness run``."""
    command = [sys.executable, "-m", "harness.cli", "run", "victims=digits_cnn",
               f"attacks={','.join(attacks)}", f"defenses={defenses}", f"seeds={seeds}",
               "executor=process", f"jobs={jobs}", "isolation=none", f"out={out}", "--quiet"]
    print(" ".join(command[2:]), flush=True)
    status = subprocess.call(command, cwd=Path(__file__).resolve().parents[1])
    if status > 1:  # 1: some cell failed (named in its result); anything else: no grid
        raise SystemExit(status)


def load_cells(out: Path) -> dict[tuple[str, str, str], dict[int, dict[str, Any]]]:
    """(version, defense, attack) -> seed -> finished cell, for every ok cell in ``out``;
    a version is ``COMMIT+CORE``: the first 12 digits of the commit and 8 of the core
    digest, so an uncommitted change to the harness is a version of its own."""
    cells: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for path in sorted((out / "cells").rglob("seed*.json")):
        result = json.loads(path.read_text())
        if result.get("status") != "ok":
            continue
        components = result["components"]
        version = f"{str(result.get('git_commit'))[:12]}+{str(result.get('core_digest'))[:8]}"
        key = (version, components["defense"]["label"],
               components["attack"]["label"])
        cells[key][int(result["seed"])] = result
    return cells


def quantile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def compare(out: Path, before: str, after: list[str], margin: float) -> dict[str, Any]:
    """Pair the before version's cells with an after version's per (defense, attack) over
    shared seeds; with several ``after`` versions, the first listed that ran the attack
    (a later commit that changed some attacks' defaults again comes first)."""
    cells = load_cells(out)
    versions = {key[0] for key in cells}

    def version(prefix: str) -> str:
        found = [v for v in versions if v.startswith(prefix)]
        if len(found) != 1:
            raise SystemExit(f"{len(found)} versions of {prefix!r} in {out}; found "
                             f"{sorted(versions)}")
        return found[0]

    before_version = version(before)
    after_versions = [version(a) for a in after]
    rows = []
    for (ver, defense, attack), old in sorted(cells.items()):
        if ver != before_version:
            continue
        for after_version in after_versions:
            new = cells.get((after_version, defense, attack), {})
            seeds = sorted(set(old) & set(new))
            if len(seeds) >= 2:
                rows.append(paired_row(attack, defense, after_version, old, new, seeds,
                                       margin))
                break
    return {"before": before_version, "after": after_versions, "margin": margin,
            "rows": rows}


def paired_row(attack: str, defense: str, after_version: str, old: dict[int, Any],
               new: dict[int, Any], seeds: list[int], margin: float) -> dict[str, Any]:
    """Times and paired quality differences of one attack under one defense."""
    row: dict[str, Any] = {"attack": attack, "defense": defense, "n": len(seeds),
                           "seeds": seeds, "after": after_version}
    for label, side in (("before", old), ("after", new)):
        times = [float(side[s]["wall_time_s"]) for s in seeds]
        row[f"p50_{label}_s"] = round(statistics.median(times), 1)
        row[f"p90_{label}_s"] = round(quantile(times, 0.9), 1)
    passes = True
    for metric in METRICS:
        diffs = [float(new[s]["metrics"][metric]) - float(old[s]["metrics"][metric])
                 for s in seeds]
        summary = mean_ci(diffs)
        mean, (lo, hi) = summary["mean"], summary["ci95"]
        row[f"{metric}_diff"] = round(mean, 4)
        row[f"{metric}_ci95"] = [lo, hi]
        passes = passes and lo > margin
        if metric == "exit_agreement":
            row["worst_seed_ea"] = round(min(diffs), 3)
    row["non_inferior"] = passes
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run this checkout's defaults into --out")
    run_p.add_argument("--out", required=True)
    run_p.add_argument("--attacks", default=",".join(ATTACKS))
    run_p.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9")
    run_p.add_argument("--defenses", default="none")
    run_p.add_argument("--jobs", type=int, default=2)
    cmp_p = sub.add_parser("compare", help="pair two commits' cells in DIR")
    cmp_p.add_argument("out")
    cmp_p.add_argument("--before", required=True, help="commit (prefix) of the old defaults")
    cmp_p.add_argument("--after", action="append", required=True,
                       help="version (prefix) of the new defaults; repeat it, latest first, "
                       "when a later commit changed some attacks' defaults again")
    cmp_p.add_argument("--margin", type=float, default=-0.02)
    cmp_p.add_argument("--json", default=str(RESULTS / "cell_cost.json"))
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.out, args.attacks.split(","), args.seeds, args.defenses, args.jobs)
        return
    report = compare(Path(args.out), args.before, args.after, args.margin)
    print_table([{**row, **{f"{m}_ci95": "[{:+.3f}, {:+.3f}]".format(*row[f"{m}_ci95"])
                            for m in METRICS}} for row in report["rows"]], COLUMNS)
    write_json(args.json, report)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
