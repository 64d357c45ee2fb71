"""Properties of the cost-respecting defense ranking (hypothesis).

Rows are built as :func:`harness.board.leaderboard.aggregate` builds them (one per
defense x attack group of a scenario, with its cells' metrics), from drawn exit
agreements, failures and costs.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.board.ranking import CostBudget, pareto_front, rank_defenses
from harness.metrics.stats import mean_ci

ATTACKS = ("exit_steal", "knockoff", "jbda", "activethief")
DEFENSES = ("none", "pad_bucket", "exit_noise", "rounding", "jitter")
UNIT = st.floats(0, 1, allow_nan=False)


def row(defense: str, attack: str, agreements: list[float | None], *, cost: float = 0.0,
        reference: bool = False) -> dict[str, Any]:
    """A leaderboard row of one (defense, attack) group; a None agreement is a failed seed."""
    ok = [(seed, ea) for seed, ea in enumerate(agreements) if ea is not None]
    cells = [{"seed": seed, "metrics": {"exit_agreement": ea, "benign_accuracy_drop": cost,
                                        "benign_refusal_rate": 0.0,
                                        "latency_overhead_p50": cost}}
             for seed, ea in ok]
    return {"scenario_id": "s", "scenario": "victim", "victim": "victim",
            "threat": {"num_exits": "granted", "architecture": "granted", "pool": "same"},
            "defense": defense, "defense_id": defense, "defense_name": defense,
            "attack": attack, "attack_id": attack, "reference": reference,
            "failed": len(agreements) - len(ok), "seeds": [s for s, _ in ok],
            "metrics": {"exit_agreement": mean_ci([ea for _, ea in ok])} if ok else {},
            "bootstrap_ci95": None, "_cells": cells}


@st.composite
def boards(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A scenario: each defense against a drawn subset of attacks, some seeds failed."""
    rows = []
    for defense in draw(st.lists(st.sampled_from(DEFENSES), min_size=1, unique=True)):
        cost = draw(st.sampled_from([0.0, 0.01, 0.2]))
        for attack in draw(st.lists(st.sampled_from(ATTACKS), min_size=1, unique=True)):
            seeds = draw(st.lists(st.one_of(UNIT, st.none()), min_size=1, max_size=3))
            rows.append(row(defense, attack, seeds, cost=cost))
    return rows


def entries(rows: list[dict[str, Any]], budget: CostBudget | None = None) -> dict[str, dict]:
    return {e["defense"]: e for e in rank_defenses(rows, budget or CostBudget())}


@settings(max_examples=150, deadline=None)
@given(boards())
def test_an_incomplete_or_over_budget_defense_is_never_ranked(rows):
    attacks_run = {r["attack"] for r in rows}
    for defense, entry in entries(rows).items():
        mine = [r for r in rows if r["defense"] == defense]
        missing = attacks_run - {r["attack"] for r in mine}
        failed = any(r["failed"] for r in mine)
        over = any(c["metrics"]["benign_accuracy_drop"] > 0.05 for r in mine for c in r["_cells"])
        if missing or failed:
            assert entry["rank"] is None and entry["status"] == "incomplete"
            assert set(entry["missing_attacks"]) == missing
        elif over:
            assert entry["rank"] is None and entry["status"] == "over_budget"
        else:
            assert entry["status"] == "ranked" and entry["rank"] is not None


@settings(max_examples=100, deadline=None)
@given(boards(), st.sets(st.sampled_from([*ATTACKS, "never_run"])))
def test_a_defense_is_complete_only_against_every_registered_real_attack(rows, registered):
    ranked = {e["defense"]: e for e in rank_defenses(rows, CostBudget(), registered)}
    alone = entries(rows)
    for defense, entry in ranked.items():
        ran = {r["attack"] for r in rows if r["defense"] == defense}
        unrun = registered - ran
        assert set(entry["missing_attacks"]) == set(alone[defense]["missing_attacks"]) | unrun
        if unrun:
            assert entry["rank"] is None and entry["status"] == "incomplete"
        else:  # every registered attack ran: the same verdict as without the registry
            assert entry["status"] == alone[defense]["status"]


@settings(max_examples=150, deadline=None)
@given(boards())
def test_ranks_are_consecutive_and_follow_the_worst_case(rows):
    ranked = [e for e in rank_defenses(rows, CostBudget()) if e["rank"] is not None]
    assert [e["rank"] for e in ranked] == list(range(1, len(ranked) + 1))
    worst = [e["worst_exit_agreement"] for e in ranked]
    assert worst == sorted(worst)


@settings(max_examples=150, deadline=None)
@given(boards(), st.sampled_from(DEFENSES), st.sampled_from(ATTACKS),
       st.lists(UNIT, min_size=1, max_size=3))
def test_the_worst_case_is_monotone_in_the_set_of_attacks(rows, defense, attack, seeds):
    """Another attack against a defense never lowers its worst case, and never makes any
    other defense complete that was not."""
    before = entries(rows)
    taken = {(r["defense"], r["attack"]) for r in rows}
    if (defense, attack) in taken:
        return
    after = entries([*rows, row(defense, attack, seeds)])
    assert after[defense]["worst_exit_agreement"] >= (
        before[defense]["worst_exit_agreement"] if defense in before else 0.0)
    for name, entry in before.items():
        if name != defense and not entry["complete"]:
            assert not after[name]["complete"]


@settings(max_examples=100, deadline=None)
@given(boards())
def test_a_reference_attack_never_decides_a_rank(rows):
    """Reference attacks (true exits) are upper bounds, not real attacks: adding one with a
    perfect score changes no entry."""
    base = entries(rows)
    defenses = {r["defense"] for r in rows}
    extra = [row(d, "reference_oracle", [1.0], reference=True) for d in defenses]
    with_reference = entries([*rows, *extra])
    for name, entry in base.items():
        other = with_reference[name]
        assert (other["rank"], other["worst_exit_agreement"], other["status"]) == (
            entry["rank"], entry["worst_exit_agreement"], entry["status"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(UNIT, UNIT), min_size=1, max_size=12))
def test_the_pareto_front_is_exactly_the_undominated_points(points):
    front = set(pareto_front(points))

    def dominated(i: int) -> bool:
        x, y = points[i]
        return any(ox <= x and oy <= y and (ox < x or oy < y) for ox, oy in points)

    assert front == {i for i in range(len(points)) if not dominated(i)}
    assert front  # a finite set always has an undominated point


@settings(max_examples=100, deadline=None)
@given(boards(), st.data())
def test_a_rank_is_provisional_exactly_when_every_real_attack_read_below_capacity(rows, data):
    slacks = {}
    for r in rows:  # a drawn slack per group, or none (an attack that estimates no exits)
        slack = data.draw(st.one_of(st.none(), st.floats(-0.1, 0.5)))
        if slack is not None and r["metrics"]:
            r["metrics"]["capacity_slack"] = mean_ci([slack])
            slacks[r["defense"], r["attack"]] = slack
    for defense, entry in entries(rows).items():
        scored = [slacks[d, a] for (d, a) in slacks if d == defense
                  and any(r["defense"] == d and r["attack"] == a and r["seeds"] for r in rows)]
        if not scored:
            assert entry["min_slack"] is None and entry["provisional"] is False
        else:
            assert entry["min_slack"] == min(scored)
            assert entry["provisional"] == (min(scored) > 0.05)
