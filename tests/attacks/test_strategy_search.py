"""Output strategy search: exact recovery of known strategies, ranges, tie-breaks."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from attacks.strategy_search import search_strategy
from harness.model import exit_probabilities
from harness.strategy import EntropyPolicy, MaxProbPolicy, OutputStrategy

POLICIES = {"max_prob": MaxProbPolicy(), "entropy": EntropyPolicy()}


def random_probs(rng: np.random.Generator, num_exits: int, n: int, classes: int,
                 sharpness: float) -> list[np.ndarray]:
    """Per-exit softmax outputs that get more confident with depth."""
    out = []
    for k in range(num_exits):
        z = rng.normal(size=(n, classes)) * sharpness * (k + 1)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        out.append(p / p.sum(axis=1, keepdims=True))
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), num_exits=st.integers(2, 5), n=st.integers(1, 120),
       classes=st.integers(2, 10), policy=st.sampled_from(sorted(POLICIES)),
       sharpness=st.floats(0.2, 4.0))
def test_recovers_a_known_strategy_exactly(seed, num_exits, n, classes, policy, sharpness):
    rng = np.random.default_rng(seed)
    pol = POLICIES[policy]
    probs = random_probs(rng, num_exits, n, classes, sharpness)
    lo, hi = pol.threshold_range(classes)
    truth = OutputStrategy(pol, tuple(rng.uniform(lo, hi, num_exits - 1)))
    exits = truth.exits(probs)
    labels = rng.integers(0, classes, n)
    result = search_strategy(probs, exits, labels, pol)
    assert result.agreement == 1.0
    assert np.array_equal(result.strategy.exits(probs), exits)
    for t in result.strategy.thresholds:
        assert lo <= t <= hi
    result.strategy.validate(num_exits, classes)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), num_exits=st.integers(2, 4), n=st.integers(1, 80),
       policy=st.sampled_from(sorted(POLICIES)))
def test_arbitrary_targets_stay_in_range_and_report_true_agreement(seed, num_exits, n, policy):
    rng = np.random.default_rng(seed)
    pol = POLICIES[policy]
    probs = random_probs(rng, num_exits, n, 5, 1.0)
    target = rng.integers(0, num_exits, n)
    result = search_strategy(probs, target, rng.integers(0, 5, n), pol)
    lo, hi = pol.threshold_range(5)
    assert all(lo <= t <= hi for t in result.strategy.thresholds)
    achieved = float(np.mean(result.strategy.exits(probs) == target))
    assert result.agreement == achieved
    assert achieved >= result.greedy_agreement - 1e-12  # coordinate ascent never hurts
    assert achieved >= float(np.mean(target == num_exits - 1))  # at least "never exit early"


def test_victim_searched_on_its_own_exits_reaches_agreement_one(trained_tiny_victim):
    x = trained_tiny_victim.data.attacker.x
    probs = exit_probabilities(trained_tiny_victim.model, x, "cpu")
    exits = trained_tiny_victim.strategy.exits(probs)
    assert len(np.unique(exits)) > 1  # the strategy really routes samples
    result = search_strategy(probs, exits, probs[-1].argmax(1), trained_tiny_victim.strategy.policy)
    assert result.agreement == 1.0
    assert np.array_equal(result.strategy.exits(probs), exits)


def test_ties_prefer_label_agreement_then_conservative_threshold():
    # Exit 0 scores: two samples; targets say both exit at the end -> fire none.
    probs = [np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([[0.5, 0.5], [0.5, 0.5]])]
    result = search_strategy(probs, np.array([1, 1]), np.array([0, 0]), MaxProbPolicy())
    assert result.strategy.thresholds == (1.0,)
    # No information in the exits (all lost): prefer firing where exit 0 gets labels right.
    probs = [np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([[0.1, 0.9], [0.1, 0.9]])]
    result = search_strategy(probs, np.array([2, 2]), np.array([0, 0]), MaxProbPolicy())
    assert result.strategy.exits(probs).tolist() == [0, 0]
