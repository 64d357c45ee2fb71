"""Per-exit threshold selection and exit reports."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.strategy import EntropyPolicy, MaxProbPolicy, OutputStrategy
from victims.thresholds import exit_report, select_thresholds

POLICIES = [MaxProbPolicy(), EntropyPolicy()]


def _random_probs(rng: np.random.Generator, n: int, classes: int, sharpness: float):
    logits = rng.normal(size=(n, classes)) * sharpness
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 80), exits=st.integers(2, 5),
       share=st.floats(0.0, 1.0), drop=st.floats(0.0, 0.2), policy=st.sampled_from(POLICIES))
def test_selection_respects_share_cap_and_range(seed, n, exits, share, drop, policy):
    rng = np.random.default_rng(seed)
    probs = [_random_probs(rng, n, 4, 1.0 + k) for k in range(exits)]
    labels = rng.integers(0, 4, n)
    th = select_thresholds(probs, labels, policy, max_accuracy_drop=drop, max_exit_share=share)
    strategy = OutputStrategy(policy, th)
    strategy.validate(exits, 4)
    routed = strategy.exits(probs)
    reaching = n
    for k in range(exits - 1):
        taken = int(np.sum(routed == k))
        assert taken <= share * reaching + 1e-9
        reaching -= taken


@pytest.mark.parametrize("policy", POLICIES)
def test_accuracy_rule_stops_before_wrong_answers(policy):
    # exit 0: confident and right on 6 samples, confident and wrong on the next 4
    p0 = np.array([[0.99, 0.01]] * 6 + [[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    labels = np.array([0] * 6 + [1] * 4 + [0] * 2)
    final = np.eye(2)[labels] * 0.98 + 0.01
    th = select_thresholds([p0, final], labels, policy, max_accuracy_drop=0.0,
                              max_exit_share=1.0)
    exits = OutputStrategy(policy, th).exits([p0, final])
    assert exits.tolist() == [0] * 6 + [1] * 6


@pytest.mark.parametrize("policy", POLICIES)
def test_ties_are_never_split_and_empty_exit_is_strict(policy):
    p0 = np.array([[0.9, 0.1]] * 4)
    labels = np.zeros(4, dtype=int)
    final = np.array([[0.99, 0.01]] * 4)
    th = select_thresholds([p0, final], labels, policy, max_exit_share=0.5)
    assert OutputStrategy(policy, th).exits([p0, final]).tolist() == [1, 1, 1, 1]
    lo, hi = policy.threshold_range(2)
    assert th[0] == (hi if policy.higher_is_confident else lo)


def test_policies_route_identically_on_two_classes():
    # with two classes, max prob and entropy order samples the same way
    rng = np.random.default_rng(0)
    probs = [_random_probs(rng, 50, 2, 2.0 + k) for k in range(3)]
    labels = rng.integers(0, 2, 50)
    routes = [OutputStrategy(p, select_thresholds(probs, labels, p)).exits(probs)
              for p in POLICIES]
    assert np.array_equal(*routes)


def test_exit_report():
    probs = [np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45]]),
             np.array([[0.2, 0.8], [0.1, 0.9], [0.3, 0.7]])]
    labels = np.array([0, 1, 0])
    report = exit_report(OutputStrategy(MaxProbPolicy(), (0.8,)), probs, labels)
    assert report.shares == pytest.approx((1 / 3, 2 / 3))
    assert report.exit_accuracy == pytest.approx((1.0, 0.5))
    assert report.head_accuracy == pytest.approx((2 / 3, 1 / 3))
    assert report.accuracy == pytest.approx(2 / 3)
    assert "shares" in report.summary()


def test_bad_selection_arguments():
    probs = [np.full((2, 2), 0.5)] * 2
    with pytest.raises(ValueError):
        select_thresholds(probs, np.zeros(2), MaxProbPolicy(), max_exit_share=1.5)
