"""Tiers and the "no better than none" flag: what the seeds can tell apart (docs/design.md
section 7). Rows are built as the ranking tests build them."""

from __future__ import annotations

from hypothesis import given, settings

from harness.board.ranking import CostBudget, rank_defenses
from harness.board.tiers import seed_worst_cases, told_apart
from harness.metrics.stats import paired_difference
from tests.harness.board.test_ranking_properties import boards, row

SEEDS = 6


def _board(levels: dict[str, float], spread: float = 0.01) -> list[dict]:
    """Each defense against two attacks over six seeds; the worse attack's exit agreement
    is ``level`` plus a small seed pattern, the other one 0.1 lower."""
    wiggle = [spread * ((s * 7) % 5 - 2) for s in range(SEEDS)]
    rows = []
    for defense, level in levels.items():
        rows.append(row(defense, "exit_steal", [level + w for w in wiggle]))
        rows.append(row(defense, "knockoff", [level - 0.1 + w for w in wiggle]))
    return rows


def _entries(rows: list[dict]) -> dict[str, dict]:
    return {e["defense"]: e for e in rank_defenses(rows, CostBudget())}


def test_the_per_seed_worst_case_takes_each_seeds_strongest_attack() -> None:
    rows = [row("d", "a", [0.2, 0.9, 0.5]), row("d", "b", [0.6, 0.1, None])]
    # seed 2 lacks attack b: its worst case is unknown, so it is left out
    assert seed_worst_cases(rows) == {0: 0.6, 1: 0.9}


def test_clearly_different_defenses_get_their_own_tiers() -> None:
    e = _entries(_board({"none": 0.9, "strong": 0.3, "medium": 0.6}))
    assert [e[d]["tier"] for d in ("strong", "medium", "none")] == [1, 2, 3]
    assert e["strong"]["vs_none"]["mean"] < -0.5 and e["strong"]["no_better_than_none"] is False
    assert e["none"]["vs_none"] is None and e["none"]["no_better_than_none"] is None
    assert e["strong"]["seed_worst"]["n"] == SEEDS


def test_defenses_within_the_seed_noise_share_a_tier_and_are_flagged() -> None:
    rows = _board({"none": 0.70, "strong": 0.30}, spread=0.01)
    # "cosmetic" lowers the worst case by less than its own seed-to-seed swing
    rows += [row("cosmetic", "exit_steal", [0.72, 0.62, 0.74, 0.61, 0.73, 0.64]),
             row("cosmetic", "knockoff", [0.5] * SEEDS)]
    e = _entries(rows)
    assert e["cosmetic"]["rank"] < e["none"]["rank"]  # the mean alone would order them ...
    assert e["cosmetic"]["tier"] == e["none"]["tier"]  # ... the seeds cannot
    assert e["cosmetic"]["no_better_than_none"] is True
    assert e["strong"]["tier"] == 1 and e["strong"]["no_better_than_none"] is False


def test_one_seed_tells_nothing_apart() -> None:
    rows = [row(d, "exit_steal", [level]) for d, level in (("none", 0.9), ("pad", 0.1))]
    e = _entries(rows)
    assert e["pad"]["tier"] == e["none"]["tier"] == 1
    assert e["pad"]["no_better_than_none"] is True  # not shown to lower anything


def test_an_incomplete_defense_gets_no_tier() -> None:
    rows = _board({"none": 0.9, "strong": 0.3})
    rows.append(row("partial", "exit_steal", [0.1] * SEEDS))  # never run against knockoff
    e = _entries(rows)
    assert e["partial"]["status"] == "incomplete" and e["partial"]["tier"] is None


@settings(max_examples=150, deadline=None)
@given(boards())
def test_tiers_partition_the_ranked_defenses_in_rank_order(rows: list[dict]) -> None:
    ranked = [e for e in rank_defenses(rows, CostBudget()) if e["status"] == "ranked"]
    tiers = [e["tier"] for e in ranked]
    assert all(t is not None for t in tiers)
    assert sorted(set(tiers)) == list(range(1, len(set(tiers)) + 1))
    leaders = {e["tier"]: e for e in ranked if e["tier_leader"] == e["defense"]}
    assert sorted(leaders) == sorted(set(tiers))  # each tier has its one leader ...
    assert [leaders[t]["rank"] for t in sorted(leaders)] == sorted(
        leaders[t]["rank"] for t in leaders)  # ... and tiers open in rank order
    worst = {e["defense"]: seed_worst_cases([r for r in rows if r["defense"] == e["defense"]
                                             and r["_cells"]]) for e in ranked}
    for e in ranked:
        leader = leaders[e["tier"]]
        assert leader["rank"] <= e["rank"]
        if e is not leader:  # a member is never told apart from its tier's first member
            diff = paired_difference(worst[e["defense"]], worst[leader["defense"]])
            assert not told_apart(diff)
