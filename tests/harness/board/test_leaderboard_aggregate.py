"""Leaderboard aggregation on hand-made results: exact groups, sweeps, n=1, failed
cells, the cost budget, the Pareto front, paired differences and the bootstrap."""

from __future__ import annotations

import hashlib
import json

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.board.leaderboard import aggregate, board_header, dedupe
from harness.board.ranking import CostBudget
from harness.board.tables import format_board
from harness.io.integrity import seal
from harness.io.schema import cell_result_schema, leaderboard_schema
from harness.metrics.stats import bootstrap_ci, paired_difference

COSTS = {"benign_accuracy_drop": 0.0, "benign_refusal_rate": 0.0,
         "latency_overhead_p50": 0.0, "latency_overhead_p99": 0.0}


def _component(name, params=None):
    return {"name": name, "params": params or {}, "label": name, "plugin": "p",
            "distribution": "d", "version": "1", "source_digest": "0" * 64}


def confusion(agree: float, n: int = 200, k: int = 2) -> dict:
    """Counts with ``agree`` of ``n`` on the diagonal (labels agree everywhere)."""
    diag = round(agree * n)
    counts = np.zeros((k, k), dtype=int)
    counts[0, 0] = diag
    counts[0, 1] = n - diag
    return {"counts": counts.tolist(), "label_agree": counts.tolist()}


def result(attack="a1", defense="none", seed=0, ea=0.5, *, attack_params=None,
           defense_params=None, budget=500, timing="realistic", status="ok", costs=None,
           victim="v", timing_params=None, defense_report=None, **settings):
    cell = {"victim": {"name": victim, "params": {}},
            "defense": {"name": defense, "params": defense_params or {}},
            "attack": {"name": attack, "params": attack_params or {}},
            "seed": seed, "budget": budget, "output": "probs",
            "timing": {"mode": timing, "profile_hash": None,
                       "params": timing_params if timing_params is not None else
                       {"deployment": "dedicated"} if timing == "realistic" else {}},
            "backend": "torch", "device": "cpu", "repeats": 1,
            "threat": {"num_exits": "granted", "architecture": "granted"},
            "isolation": "process", **settings}
    digest = hashlib.sha256(json.dumps(cell, sort_keys=True).encode()).hexdigest()
    ok = status == "ok"
    metrics = {"exit_agreement": ea, "fidelity": 0.9, **COSTS, **(costs or {})} if ok else {}
    r = {"schema_version": 3, "harness_version": "0.1.0", "protocol_version": 4,
         "config_hash": digest, "cell": cell,
         "components": {"victim": _component(victim),
                        "defense": _component(defense, defense_params),
                        "attack": _component(attack, attack_params)},
         "seed": seed, "timing": cell["timing"], "device": "cpu", "machine": {},
         "packages": {"torch": "x"}, "git_commit": None, "status": status,
         "error": None if ok else {"type": "E", "message": "boom", "component": None},
         "metrics": metrics,
         "diagnostics": ({"exit_confusion": confusion(ea),
                          **({"defense_report": defense_report} if defense_report else {})}
                         if ok else {}),
         "wall_time_s": 1.0, "finished_at": "2026-11-29T00:00:00+00:00"}
    from harness.stages import PROTOCOL_VERSION

    r["protocol_version"] = PROTOCOL_VERSION
    sealed = seal(r)
    jsonschema.validate(sealed, cell_result_schema())
    return sealed


def board_of(results, budget=None):
    board = {**board_header("test"), **aggregate(results, set(), [], budget)}
    jsonschema.validate(board, leaderboard_schema())
    return board


def test_parameter_sweep_budget_and_timing_are_separate_groups_with_visible_variants():
    results = [result(attack_params={"epochs": e}, seed=s) for e in (10, 20) for s in (0, 1)]
    results += [result(budget=300), result(timing="analytic")]
    board = board_of(results)
    rows = board["groups"]
    assert len(rows) == 4 and {len(r["seeds"]) for r in rows} == {1, 2}
    variants = sorted(r["variant"] for r in rows)
    assert any("attack.epochs=10" in v for v in variants)
    assert any("attack.epochs=20" in v for v in variants)
    assert any("budget=300" in v for v in variants)
    assert any("timing.mode=analytic" in v for v in variants)
    for row in rows:  # provenance: the key, each member's hash and the plugin origins
        assert row["key"]["budget"] in (300, 500) and row["config_hashes"]
        assert row["plugins"]["attack"][0]["distribution"] == "d"
    text = format_board(board)
    assert "attack.epochs=10" in text and "exit_estimation_accuracy" in text  # untruncated


def test_one_seed_has_no_interval_and_two_seeds_have_one():
    board = board_of([result(seed=0, ea=0.4), result(attack="a2", seed=0, ea=0.3),
                      result(attack="a2", seed=1, ea=0.5)])
    by_attack = {r["attack"]: r for r in board["groups"]}
    assert by_attack["a1"]["metrics"]["exit_agreement"]["ci95"] == [None, None]
    lo, hi = by_attack["a2"]["metrics"]["exit_agreement"]["ci95"]
    assert lo < 0.4 < hi


def test_copies_of_a_cell_count_once():
    r = result()
    copies = [{**r, "_path": "cells/x.json"}, {**r, "_path": "cells/copy.json"}]
    with pytest.warns(UserWarning, match="copies of one cell result"):
        assert len(dedupe(copies)) == 1
    with pytest.warns(UserWarning):
        board = board_of(copies)
    assert board["groups"][0]["seeds"] == [0]


def test_failed_attack_makes_the_defense_incomplete_never_better():
    results = [result("a1", "none", ea=0.6), result("a2", "none", ea=0.5),
               result("a1", "d1", ea=0.2), result("a2", "d1", status="failed"),
               result("a1", "d2", ea=0.3), result("a2", "d2", ea=0.35),
               result("a1", "d3", ea=0.1)]  # d3: a2 never ran against it
    board = board_of(results)
    entries = {e["defense"]: e for e in board["defense_ranking"]}
    assert entries["d1"]["status"] == "incomplete" and entries["d1"]["rank"] is None
    assert entries["d1"]["failed_attacks"] == ["a2"]
    assert entries["d3"]["status"] == "incomplete" and entries["d3"]["missing_attacks"] == ["a2"]
    ranked = [e["defense"] for e in board["defense_ranking"] if e["rank"] is not None]
    assert ranked == ["d2", "none"]  # d1's 0.2 and d3's 0.1 are not ranked first
    assert "incomplete: failed a2" in format_board(board)


@pytest.mark.parametrize(("channel", "reason"), [
    ({"timing_params": {"deployment": "shared"}}, "timing.deployment=shared"),
    ({"timing_params": {"deployment": "dedicated", "spread": 1.0}}, "timing.spread=1.0"),
    ({"timing_params": {}}, "timing.deployment=unrecorded"),
    ({"timing": "analytic"}, "timing=analytic"),
    ({"timing": "live", "timing_params": {}}, "timing=live"),
    ({"network": "lan"}, "timing.network=lan"),
    ({"transport": "http"}, "transport=http"),
    ({"isolation": "none"}, "not isolated"),
])
def test_only_the_default_channel_is_ranked_noise_is_never_credited(channel, reason):
    """A defense measured under any other timing is a group of its own, not a rank: here
    'noisy' would rank first on the attack's lower agreement under the noisier channel."""
    results = [result("a1", "none", ea=0.6), result("a1", "weak", ea=0.55),
               result("a1", "noisy", ea=0.1, **channel)]
    board = board_of(results)
    assert [e["defense"] for e in board["defense_ranking"]] == ["weak", "none"]
    rows = {r["defense"]: r for r in board["groups"]}
    assert rows["noisy"]["unranked"] == reason and rows["weak"]["unranked"] is None
    assert all("noisy" not in (d["a"], d["b"]) for d in board["paired_differences"])
    assert f"(unranked: {reason})" in format_board(board)


def test_defenses_over_the_cost_budget_are_listed_apart():
    refuse_all = {"benign_accuracy_drop": 0.994, "benign_refusal_rate": 1.0}
    results = [result("a1", "none", ea=0.6), result("a1", "refuser", ea=0.0, costs=refuse_all),
               result("a1", "cheap", ea=0.5)]
    board = board_of(results)
    entries = {e["defense"]: e for e in board["defense_ranking"]}
    assert entries["refuser"]["rank"] is None and entries["refuser"]["status"] == "over_budget"
    assert entries["cheap"]["rank"] == 1 and entries["none"]["rank"] == 2
    generous = board_of(results, CostBudget(max_accuracy_drop=1.0, max_refusal_rate=1.0))
    assert {e["defense"]: e["rank"] for e in generous["defense_ranking"]}["refuser"] == 1


def test_pareto_front_of_leakage_against_latency():
    def lat(x):
        return {"latency_overhead_p50": x}

    results = [result("a1", "none", ea=0.6, costs=lat(0.0)),
               result("a1", "slow_good", ea=0.2, costs=lat(2.0)),
               result("a1", "mid", ea=0.4, costs=lat(0.5)),
               result("a1", "dominated", ea=0.5, costs=lat(1.0))]
    front = {e["defense"]: e["pareto"] for e in board_of(results)["defense_ranking"]}
    assert front == {"none": True, "slow_good": True, "mid": True, "dominated": False}


def test_paired_differences_pair_by_seed():
    results = [result("a1", "none", seed=s, ea=0.6 + 0.1 * s) for s in range(3)]
    results += [result("a2", "none", seed=s, ea=0.5 + 0.1 * s) for s in range(3)]
    results += [result("a1", "d1", seed=s, ea=0.3 + 0.1 * s) for s in range(3)]
    diffs = board_of(results)["paired_differences"]
    attack = next(d for d in diffs if d["kind"] == "attack")
    assert (attack["a"], attack["b"]) == ("a2", "a1")
    assert attack["mean"] == pytest.approx(-0.1) and attack["n"] == 3
    assert attack["ci95"][0] == pytest.approx(-0.1) and attack["ci95"][1] == pytest.approx(-0.1)
    defense = next(d for d in diffs if d["kind"] == "defense" and d["attack"] == "a1")
    assert defense["mean"] == pytest.approx(-0.3) and defense["seeds"] == [0, 1, 2]
    assert paired_difference({0: 0.5}, {1: 0.4})["n"] == 0  # no shared seed


def test_confusion_is_summed_over_seeds_and_bootstrap_is_deterministic():
    results = [result(seed=s, ea=0.5) for s in range(2)]
    a, b = board_of(results), board_of(results)
    row = a["groups"][0]
    assert np.asarray(row["exit_confusion"]).sum() == 400
    assert row["bootstrap_ci95"] == b["groups"][0]["bootstrap_ci95"]
    lo, hi = row["bootstrap_ci95"]["exit_agreement"]
    assert lo < 0.5 < hi and hi - lo < 0.2


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=3))
def test_bootstrap_interval_brackets_the_observed_agreement(tables):
    built = []
    for same, other in tables:
        if same + other == 0:
            same = 1
        built.append({"counts": [[same, other], [0, 0]], "label_agree": [[same, 0], [0, 0]]})
    observed = np.mean([t["counts"][0][0] / (t["counts"][0][0] + t["counts"][0][1])
                        for t in built])
    ci = bootstrap_ci(built, np.random.default_rng(0))["exit_agreement"]
    assert 0.0 <= ci[0] <= ci[1] <= 1.0
    assert ci[0] - 0.08 <= observed <= ci[1] + 0.08


def test_defense_counters_are_averaged_over_the_defenses_cells_and_shown():
    results = [result("a1", "none", s) for s in (0, 1)] + [
        result("a1", "guard", 0, 0.4, defense_report={"flagged": 4, "delayed_s": 0.5}),
        result("a1", "guard", 1, 0.4, defense_report={"flagged": 2, "odd": True}),
        result("a1", "guard", 2, 0.4)]
    board = board_of(results)
    entry = {e["defense"]: e for e in board["defense_ranking"]}
    assert entry["guard"]["defense_report"] == {"delayed_s": 0.5, "flagged": 3.0}
    assert entry["none"]["defense_report"] == {}
    from harness.board.html_page import _defense_rankings

    html = _defense_rankings(board)
    assert "delayed_s 0.500; flagged 3.000" in html and "none reported" in html


def test_coverage_is_against_every_registered_real_attack_not_the_grid():
    # a plugin defense tried against two attacks, as a new user would: never complete or
    # first while a registered real attack was never run against it, however small the grid
    results = [result("a1", "none", ea=0.6), result("a2", "none", ea=0.5),
               result("a1", "mine", ea=0.1), result("a2", "mine", ea=0.1),
               result("a1", "mine", ea=0.1, attack_params={"epochs": 3})]
    small = {e["defense"]: e for e in board_of(results)["defense_ranking"]}
    assert small["mine"]["rank"] == 1  # measured against the grid only
    board = {**board_header("test"),
             **aggregate(results, set(), [], None, real_attacks={"a1", "a2", "a3", "a4"})}
    jsonschema.validate(board, leaderboard_schema())
    entries = {e["defense"]: e for e in board["defense_ranking"]}
    for name in ("mine", "none"):
        assert entries[name]["status"] == "incomplete" and entries[name]["rank"] is None
    assert entries["mine"]["missing_attacks"] == ["a3", "a4"]  # by registered name
    # none also lacks the scenario's a1 variant (epochs=3) that only ran against mine
    assert entries["none"]["missing_attacks"] == ["a1", "a3", "a4"]
    assert "incomplete: missing a3, a4" in format_board(board)
    from harness.board.html_page import _defense_rankings

    assert "not run against: a3, a4" in _defense_rankings(board)
    full = {**board_header("t"), **aggregate(results, set(), [], None, real_attacks={"a1", "a2"})}
    assert {e["defense"]: e["rank"] for e in full["defense_ranking"]} == {"mine": 1, "none": None}
