"""Defense scoring end to end: zero costs for `none`, worst costs for refusing everything,
stacks named by their members, and the leaderboard's per-defense costs and table."""

from __future__ import annotations

import json

import pytest

from harness.board.leaderboard import build_leaderboard
from harness.board.tables import format_defense_table
from harness.plugins.manager import make_plugin_manager
from harness.run.config import parse_overrides
from harness.run.runner import run_grid

pytestmark = pytest.mark.integration  # runs cells, workers or subprocesses

COSTS = ("benign_accuracy_drop", "benign_refusal_rate", "latency_overhead_p50",
         "latency_overhead_p99", "compute_overhead")


def test_defense_costs_leakage_stacks_and_ranking_end_to_end(tiny_plugin, tmp_path):
    spec = parse_overrides(["victims=tiny_victim", "attacks=tiny_attack",
                            "defenses=none,refuse_all,pad_tiny+refuse_all,pad_tiny",
                            f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}",
                            "replicas=0"])  # isolated: isolation=none cells are never ranked
    summary = run_grid(spec, make_plugin_manager(), show_progress=False)
    assert summary.failed == 0
    cells = {}
    for path in summary.result_paths:
        result = json.loads(path.read_text())
        cells[result["components"]["defense"]["label"]] = result
    board = build_leaderboard(tmp_path / "out", set())
    check_none_costs_nothing(cells)
    for label in ("refuse_all", "pad_tiny+refuse_all"):
        check_refusing_everything_scores_the_worst_costs(cells, label)
    check_stack_is_recorded_with_its_members(cells)
    check_leaderboard_ranks_defenses_with_their_costs(board)


def check_none_costs_nothing(cells):
    metrics = cells["none"]["metrics"]
    for name in COSTS:
        assert metrics[name] == 0.0, name
    assert metrics["speedup_retained"] == pytest.approx(1.0)
    assert metrics["leakage_bits"] == metrics["leakage_bits_intended"]
    assert metrics["chance_exit_accuracy"] <= metrics["bayes_exit_accuracy"]


def check_refusing_everything_scores_the_worst_costs(cells, label):
    metrics = cells[label]["metrics"]
    assert metrics["benign_accuracy_drop"] == pytest.approx(metrics["victim_accuracy"])
    assert metrics["benign_refusal_rate"] == 1.0
    assert metrics["speedup_retained"] == 0.0
    for name in ("latency_overhead_p50", "latency_overhead_p99", "compute_overhead"):
        assert metrics[name] is None, name


def check_stack_is_recorded_with_its_members(cells):
    stack = cells["pad_tiny+refuse_all"]
    assert stack["components"]["defense"]["name"] == "stack"
    assert [m["name"] for m in stack["components"]["defense"]["params"]["members"]] == [
        "pad_tiny", "refuse_all"]
    assert stack["diagnostics"]["defense_report"] == {}


def check_leaderboard_ranks_defenses_with_their_costs(lb):
    ranking = {e["defense"]: e for e in lb["defense_ranking"]}
    assert set(ranking) == {"none", "refuse_all", "pad_tiny+refuse_all", "pad_tiny"}
    assert ranking["refuse_all"]["costs"]["benign_refusal_rate"] == 1.0
    assert ranking["refuse_all"]["costs"]["speedup_retained"] == 0.0
    assert ranking["pad_tiny"]["costs"]["latency_overhead_p50"] > 0
    assert ranking["none"]["costs_ci95"]["benign_refusal_rate"] == [None, None]  # one seed
    table = format_defense_table(lb)
    assert "pad_tiny+refuse_all" in table and "n/a" in table
