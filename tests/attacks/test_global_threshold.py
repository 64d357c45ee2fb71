"""The baselines' strategy rule: the most permissive global threshold within max_drop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attacks.global_threshold import choose_global_threshold, strategy_outcomes
from harness.strategy import EntropyPolicy, MaxProbPolicy, OutputStrategy

COST = (0.25, 0.5, 1.0)


def rows(p_max: list[float], label: list[int]) -> np.ndarray:
    """Probability rows over 3 classes with top class ``label`` at ``p_max``."""
    out = np.full((len(p_max), 3), 0.0)
    for i, (p, y) in enumerate(zip(p_max, label, strict=True)):
        out[i] = (1 - p) / 2
        out[i, y] = p
    return out


def three_exits():
    """Exit 0 is confident but wrong on the rows with p 0.9; exit 2 is always right."""
    victim = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    wrong = (victim + 1) % 3
    e0 = rows([0.99, 0.98, 0.97, 0.9, 0.9, 0.6, 0.5, 0.5],
              [0, 1, 2, wrong[3], wrong[4], 2, 0, 1])
    e1 = rows([0.95] * 8, victim.tolist())
    e2 = rows([0.99] * 8, victim.tolist())
    return [e0, e1, e2], victim


def test_picks_the_lowest_threshold_that_keeps_fidelity_within_max_drop():
    probs, victim = three_exits()
    choice = choose_global_threshold(probs, victim, MaxProbPolicy(), COST, 3, max_drop=0.0)
    assert choice.final_exit_fidelity == 1.0 and choice.fidelity == 1.0
    # 0.9 would send two wrong rows through exit 0; the next candidate above it is 0.95,
    # at which exit 1 answers everything exit 0 does not
    assert choice.threshold == pytest.approx(0.95)
    assert choice.strategy.to_json() == {"policy": "max_prob", "thresholds": [choice.threshold] * 2}
    exits = choice.strategy.exits(probs)
    assert exits.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert choice.cost_fraction == pytest.approx((3 * 0.25 + 5 * 0.5) / 8)
    # a looser budget (2 of 8 rows may be lost) lets the lower threshold through
    loose = choose_global_threshold(probs, victim, MaxProbPolicy(), COST, 3, max_drop=0.25)
    assert loose.threshold < choice.threshold and loose.fidelity >= 0.75
    assert loose.cost_fraction < choice.cost_fraction


def test_final_exit_only_reference_and_fixed_threshold_are_reported():
    probs, victim = three_exits()
    fixed = choose_global_threshold(probs, victim, MaxProbPolicy(), COST, 3, 0.01, fixed=0.5)
    assert fixed.threshold == 0.5 and fixed.fidelity == pytest.approx(0.75)
    report = fixed.to_json()
    assert report["final_exit_only"] == {"fidelity_on_queries": 1.0, "cost_fraction": 1.0}
    assert report["global_threshold"]["rows_from"] == "queries (fixed threshold)"


def test_entropy_policy_is_permissive_in_the_other_direction():
    probs, victim = three_exits()
    choice = choose_global_threshold(probs, victim, EntropyPolicy(), COST, 3, max_drop=0.0)
    assert choice.fidelity == 1.0
    stricter = choice.threshold - 1e-9
    exits_strict = OutputStrategy(EntropyPolicy(), (stricter, stricter)).exits(probs)
    assert (choice.strategy.exits(probs) <= exits_strict).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 4), st.floats(0.0, 0.3))
def test_rule_meets_its_bound_or_falls_back_to_the_strictest(seed, k, max_drop):
    g = np.random.default_rng(seed)
    logits = g.normal(size=(k, 30, 4)) * g.uniform(0.5, 4)
    probs = [np.exp(z) / np.exp(z).sum(1, keepdims=True) for z in logits]
    victim = g.integers(0, 4, 30)
    cost = tuple(np.linspace(1 / k, 1, k))
    choice = choose_global_threshold(probs, victim, MaxProbPolicy(), cost, 4, max_drop)
    _, labels = strategy_outcomes(probs, MaxProbPolicy(), np.array([choice.threshold]))
    assert choice.fidelity == pytest.approx((labels[0] == victim).mean())
    assert (choice.fidelity >= choice.final_exit_fidelity - max_drop - 1e-12
            or choice.threshold == 1.0)
    # no lower threshold among the exits' own scores also meets the bound
    scores = np.concatenate([p.max(1) for p in probs[:-1]])
    lower = np.unique(scores[scores < choice.threshold])
    if len(lower):
        _, lab = strategy_outcomes(probs, MaxProbPolicy(), lower)
        assert ((lab == victim).mean(1) < choice.final_exit_fidelity - max_drop - 1e-12).all()
