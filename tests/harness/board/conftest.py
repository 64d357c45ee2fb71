"""A small hand-made leaderboard folder for the render tests: ``leaderboard.json`` with
today's fields and the ones being added (group ids, keys, bootstrap intervals, confusion
matrices, budget flags, paired differences), a few cell files (with and without the
latency histogram, one corrupt), a benchmarks folder with a budget sweep, and labels a
hostile plugin could choose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

HOSTILE = '<script>window.__pwned=1</script>" onmouseover="window.__pwned=2'
"""An attack label with markup, an attribute break-out and matplotlib mathtext ($)."""
HOSTILE_MATH = r"evil$\frac{$"


def _stat(mean: float | None, ci: list[float | None] | None = None, n: int = 1) -> dict[str, Any]:
    return {"mean": mean, "ci95": ci or [None, None], "n": n if mean is not None else 0}


def _group(victim: str, defense: str, attack: str, ea: float | None, seeds: list[int],
           **extra: Any) -> dict[str, Any]:
    n = len(seeds)
    ci = [ea - 0.05, ea + 0.05] if ea is not None and n > 1 else None
    return {"victim": victim, "defense": defense, "attack": attack,
            "threat": {"num_exits": "granted", "architecture": "granted", "pool": "same"},
            "reference": False, "isolation": "process", "seeds": seeds, "failed": 0,
            "config_hashes": [f"{i:064x}" for i in seeds],
            "metrics": {"exit_agreement": _stat(ea, ci, n), "fidelity": _stat(0.9, None, n),
                        "efficiency_gap": _stat(0.1, None, n)}, **extra}


FULL_ENTRY = {
    "rank": None, "tier": None, "victim": "digits_cnn", "defense": "my_plugin_defense_with_a_long_name",
    "deployment": "shared_cpu", "worst_attack": "exit_steal_profiled", "worst_exit_agreement": 0.612,
    "worst_exit_agreement_ci95": [0.55, 0.67], "seed_worst": _stat(0.63, [0.58, 0.69], 3),
    "vs_none": {"mean": -0.081, "ci95": [-0.2, 0.04], "n": 3, "seeds": [0, 1, 2]},
    "no_better_than_none": True, "status": "incomplete", "complete": False,
    "missing_attacks": ["activethief", "adaptive_exit_steal", "exit_distill", "exit_steal_kde",
                        "exit_steal_ruptures", "function_only", "global_threshold", "jbda",
                        "knockoff_bandit", "noisy_labels"],
    "failed_attacks": [], "within_budget": True, "over_budget": [], "pareto": False,
    "min_slack": 0.071, "min_slack_attack": "exit_steal", "provisional": True, "cells": 6,
    "attacks": ["exit_steal", "exit_steal_profiled", "knockoff"],
    "costs": {m: 0.123456 for m in (
        "leakage_bits", "bayes_exit_accuracy", "chance_exit_accuracy", "benign_accuracy_drop",
        "benign_refusal_rate", "latency_overhead_p50", "latency_overhead_p99", "compute_overhead",
        "speedup_retained", "leakage_bits_intended", "bayes_exit_accuracy_intended",
        "chance_exit_accuracy_intended")},
    "defense_report": {"padded_queries": 1200.0, "mean_pad_seconds": 0.00031,
                       "refused_queries": 0.0, "buckets_used": 4.0}}
"""A defense entry with every field a full grid fills, at its widest (the 1400 px check)."""


def make_board() -> dict[str, Any]:
    groups = [
        _group("digits_cnn", "none", "exit_steal", 0.71, [0, 1], group_id="g-es-none",
               key={"components": {"attack": {"label": "exit_steal", "params": {"epochs": 60}}},
                    "budget": 500, "output": "probs", "timing": {"mode": "realistic"},
                    "backend": "torch", "device_class": "cpu"},
               cells=["cells/digits_cnn/none/exit_steal/seed0-a.json"],
               plugins={"exitsteal-harness": "0.1.0"},
               bootstrap_ci95={"exit_agreement": [0.66, 0.75]},
               exit_confusion=[[30, 2, 0], [3, 25, 4], [0, 5, 40]]),
        _group("digits_cnn", "pad_bucket", "exit_steal", 0.32, [0], group_id="g-es-pad"),
        _group("digits_cnn", "none", "knockoff", None, [], failed=1),  # no group_id: index 2
        _group("digits_cnn", "jitter", "exit_steal", 0.55, [0, 1, 2], group_id="g-es-jit"),
        _group("digits_cnn", "jitter", "exit_steal{scale=2.0}", 0.35, [0], group_id="g-es-jit2"),
        _group("digits_cnn", "pad_bucket", HOSTILE, 0.32, [0], group_id="g-hostile"),
        _group("digits_cnn", "none", HOSTILE_MATH, 0.5, [0], group_id="g-math"),
    ]
    costs = {"latency_overhead_p50": 0.0, "benign_accuracy_drop": 0.0, "leakage_bits": 1.1}
    return {
        "schema_version": 3, "harness_version": "0.1.0", "protocol_version": 2,
        "generated_at": "2025-01-01T00:00:00+00:00", "headline": "exit_agreement",
        "command": ["harness", "run", "victims=digits_cnn"],
        "cells": {"ok": 9, "failed": 1},
        "cost_budget": {"benign_accuracy_drop": 0.05, "benign_refusal_rate": 0.05},
        "a_future_field": {"nested": [1, 2]},
        "groups": groups,
        "defense_ranking": [
            {"rank": 1, "victim": "digits_cnn", "defense": "pad_bucket", "worst_attack": HOSTILE,
             "worst_exit_agreement": 0.32, "worst_exit_agreement_ci95": [None, None],
             "costs": {**costs, "latency_overhead_p50": 0.4}, "complete": True,
             "within_budget": True, "pareto": True, "cells": 2, "attacks": ["exit_steal", HOSTILE],
             "min_slack": 0.12, "min_slack_attack": "exit_steal", "provisional": True},
            {"rank": 2, "victim": "digits_cnn", "defense": "jitter", "worst_attack": "exit_steal",
             "worst_exit_agreement": 0.55, "costs": {**costs, "latency_overhead_p50": 0.2},
             "complete": False, "failed_attacks": ["knockoff"], "within_budget": True,
             "threat": {"num_exits": "granted", "architecture": "granted"}},
            {"rank": None, "victim": "digits_cnn", "defense": "refuse_all",
             "worst_exit_agreement": 0.1, "costs": {**costs, "benign_refusal_rate": 0.99,
                                                    "a_new_cost": 3},
             "within_budget": False, "over_budget": ["benign_refusal_rate 0.99 > 0.05"]},
            {"rank": 3, "victim": "digits_cnn", "defense": "none", "worst_attack": "exit_steal",
             "worst_exit_agreement": 0.71, "costs": costs},
            FULL_ENTRY,
        ],
        "attack_ranking": [
            {"rank": 1, "victim": "digits_cnn", "attack": "exit_steal", "reference": False,
             "exit_agreement": 0.71, "fidelity": 0.9, "replica_exit_agreement": 0.8},
        ],
        "replica_agreement": [
            {"victim": "digits_cnn", "status": "ok", "reason": "", "n": 3, "seeds": [1, 2, 3],
             "victim_train_seed": 0,
             "metrics": {"exit_agreement": _stat(0.8, [0.75, 0.85], 3)}},
        ],
        "remote_attacks": [
            {"victim": "digits_cnn", "attack": HOSTILE, "remote": True, "ranked": False,
             "file": "remote/000-knockoff.json", "server": "http://10.0.0.2:8000",
             "metrics": {"exit_agreement": 0.612, "fidelity": 0.9, "queries_used": 300.0}},
        ],
        "paired_differences": [
            {"a": "exit_steal", "b": "knockoff", "metric": "exit_agreement", "mean": 0.2,
             "ci95": [0.1, 0.3], "n": 3},
        ],
    }


def _cell(defense: str, seed: int, histogram: bool, status: str = "ok") -> dict[str, Any]:
    edges = [1e-4 * 1.15 ** k for k in range(21)]
    diagnostics: dict[str, Any] = {"attack": {"estimated_boundaries_s": [2.0e-4, 4.0e-4, 7.0e-4]}}
    if histogram:
        counts = [[max(0, 30 - 3 * abs(k - centre)) for k in range(20)] for centre in (3, 8, 12, 17)]
        diagnostics["query_latency_histogram"] = {"edges_s": edges, "counts_by_exit": counts}
    comps = {kind: {"name": name, "label": name, "params": {}} for kind, name in
             (("victim", "digits_cnn"), ("defense", defense), ("attack", "exit_steal"))}
    return {"status": status, "seed": seed, "components": comps, "diagnostics": diagnostics,
            "metrics": {"exit_agreement": 0.5}}


def make_board_dir(root: Path) -> dict[str, Any]:
    """Write the synthetic board, its cells and a benchmarks folder under ``root``."""
    board = make_board()
    root.mkdir(parents=True, exist_ok=True)
    (root / "leaderboard.json").write_text(json.dumps(board, indent=1))
    cells = {"none/exit_steal/seed0-a.json": _cell("none", 0, True),
             "none/exit_steal/seed1-b.json": _cell("none", 1, False),
             "pad_bucket/exit_steal/seed0-c.json": _cell("pad_bucket", 0, True),
             "pad_bucket/exit_steal/seed1-f.json": _cell("pad_bucket", 1, True, status="failed"),
             "jitter/exit_steal/seed0-d.json": _cell("jitter", 0, False)}
    for rel, cell in cells.items():
        path = root / "cells" / "digits_cnn" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cell))
    (root / "cells" / "digits_cnn" / "none" / "exit_steal" / "seed2-torn.json").write_text("{not json")
    bench = root / "bench"
    bench.mkdir()
    sweep = [{"attack": a, "defense": d, "budget": b, "exit_agreement": base + 0.0004 * b,
              "exit_agreement_ci95": [base, base + 0.0008 * b]}
             for a, base in (("exit_steal", 0.3), ("knockoff", 0.35))
             for d in ("none", "pad_bucket") for b in (50, 100, 250, 500)]
    (bench / "baseline_sweep.json").write_text(json.dumps({"budgets": [50, 100, 250, 500],
                                                          "sweep": sweep}))
    return board


@pytest.fixture
def board_dir(tmp_path: Path) -> Path:
    make_board_dir(tmp_path / "board")
    return tmp_path / "board"
