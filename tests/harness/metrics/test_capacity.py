"""The capacity figure (harness/metrics/capacity.py): per input, all admitted repeats,
against the intended exits, with an interval; answers for every exit mix (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.metrics.capacity import (
    channel_capacity,
    estimation_per_input,
    input_groups,
    monte_carlo_capacity,
    wilson,
)
from harness.metrics.leakage import majority_exit_rate


def _channel(intended, repeats, spread, rng, quantum=0.0):
    """Log-normal latencies per exit (1, 2, 3 ms ...), optionally rounded to a grid."""
    base = np.log(1e-3 * (1 + np.asarray(intended)))
    lat = np.exp(base[:, None] + rng.normal(0, spread, (len(intended), repeats)))
    if quantum:
        lat = np.maximum(np.ceil(lat / quantum) * quantum, quantum)
    return lat.reshape(-1), np.repeat(intended, repeats), np.repeat(np.arange(len(intended)),
                                                                     repeats)


MIXES = st.sampled_from([(0.98, 0.01, 0.01), (0.5, 0.5, 0.0), (1 / 3, 1 / 3, 1 / 3),
                         (0.01, 0.01, 0.98), (1.0, 0.0, 0.0)])


@settings(max_examples=40, deadline=None)
@given(mix=MIXES, n=st.sampled_from([2, 9, 60, 300]), repeats=st.sampled_from([1, 3]),
       spread=st.sampled_from([0.0, 0.3, 2.0]), quantum=st.sampled_from([0.0, 5e-3]),
       seed=st.integers(0, 2**16))
def test_every_exit_mix_gets_a_clear_answer(mix, n, repeats, spread, quantum, seed):
    rng = np.random.default_rng(seed)
    intended = rng.choice(3, size=n, p=mix)
    lat, exits, groups = _channel(intended, repeats, spread, rng, quantum)
    c = channel_capacity(lat, exits, groups)
    assert c.inputs == n
    assert 0.0 <= c.ci95[0] <= c.estimate <= c.ci95[1] <= 1.0
    assert c.estimate >= majority_exit_rate(intended) - 1e-12  # never below chance


def test_separable_exits_are_read_and_repeats_add_evidence():
    rng = np.random.default_rng(0)
    intended = rng.integers(0, 3, 400)
    assert channel_capacity(*_channel(intended, 1, 0.01, rng)).estimate > 0.99
    one = channel_capacity(*_channel(intended, 1, 0.6, rng)).estimate
    five = channel_capacity(*_channel(intended, 5, 0.6, rng)).estimate
    assert five > one + 0.1  # five looks at an input carry more than one


def test_a_constant_latency_carries_nothing_and_refusals_are_left_out():
    intended = np.array([0, 1, 1, 2] * 25)
    lat = np.full(len(intended), 2e-3)
    c = channel_capacity(lat, intended, np.arange(len(intended)))
    assert c.estimate == majority_exit_rate(intended)
    lat[:10] = np.nan  # refused queries
    assert channel_capacity(lat, intended, np.arange(len(intended))).inputs == 90
    assert channel_capacity(np.full(3, np.nan), np.zeros(3, int), np.arange(3)).inputs == 0


def test_inputs_are_grouped_by_content_and_estimation_is_per_input():
    x = np.array([[0.0, 1.0], [0.5, 0.5], [0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    groups = input_groups(x)
    assert groups[0] == groups[2] == groups[3] != groups[1]
    estimated, intended = np.array([1, 2, 1, 0]), np.array([1, 2, 1, 1])
    assert estimation_per_input(estimated, intended, groups, np.ones(4, bool)) == 1.0
    assert estimation_per_input(estimated, intended, groups, np.zeros(4, bool)) is None


def test_the_wilson_interval_holds_its_proportion():
    for k, n in ((0, 10), (10, 10), (37, 50), (1, 1)):
        lo, hi = wilson(k, n)
        assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert wilson(0, 0) == (0.0, 1.0)


def test_fresh_draws_read_a_rare_exit_the_cross_validation_misses():
    rng = np.random.default_rng(3)
    intended = rng.choice(4, size=100, p=(0.6, 0.3, 0.08, 0.02))
    lat, exits, groups = _channel(intended, 1, 0.12, rng)
    draws, draw_exits, _ = _channel(np.repeat(intended, 20), 1, 0.12, rng)
    mc = monte_carlo_capacity(lat, exits, groups, draws, draw_exits)
    cv = channel_capacity(lat, exits, groups)
    assert mc is not None and mc.inputs == cv.inputs == 100
    assert mc.estimate >= cv.estimate - 0.02 and mc.estimate > 0.9
    missing = draw_exits != intended.max()  # the draws never saw one intended exit
    assert monte_carlo_capacity(lat, exits, groups, draws[missing], draw_exits[missing]) is None
