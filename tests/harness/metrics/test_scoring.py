from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.metrics.leakage import bayes_exit_accuracy, leakage_bits, majority_exit_rate
from harness.metrics.scoring import (
    cohen_kappa,
    defense_costs,
    exit_agreement,
    exit_distribution_tv,
    exit_estimation_accuracy,
    final_exit_scores,
    strategy_scores,
)


def test_hand_computed_agreement_kappa_tv():
    a = np.array([0, 0, 1, 1])
    b = np.array([0, 1, 1, 1])
    assert exit_agreement(a, b) == 0.75
    # p_o = .75; p_e = .5*.25 + .5*.75 = .5 -> kappa = .5
    assert cohen_kappa(a, b, 2) == pytest.approx(0.5)
    # histograms (.5,.5) vs (.25,.75) -> TV = .25
    assert exit_distribution_tv(a, b, 2) == pytest.approx(0.25)


def test_kappa_constant_cases():
    same = np.zeros(5, dtype=int)
    assert cohen_kappa(same, same, 3) == 1.0
    assert cohen_kappa(same, np.ones(5, dtype=int), 3) == 0.0


def test_strategy_scores_costs():
    s = strategy_scores(victim_exits=np.array([0, 1]), victim_labels=np.array([3, 4]),
                        victim_cost=(0.5, 1.0), sub_exits=np.array([1, 1]),
                        sub_labels=np.array([3, 5]), sub_cost=(0.25, 1.0), y_true=np.array([3, 4]))
    assert s["exit_agreement"] == 0.5
    assert s["fidelity"] == 0.5 and s["accuracy"] == 0.5 and s["victim_accuracy"] == 1.0
    assert s["cost_ratio"] == pytest.approx(1.0 / 0.75)
    assert s["efficiency_gap"] == pytest.approx(1.0 / 0.75 - 1.0)


def test_final_exit_scores_are_the_substitute_without_early_exit():
    # victim: mean cost (0.5 + 1.0) / 2 = 0.75, so always running the full network costs 1/0.75
    s = final_exit_scores(victim_exits=np.array([0, 1]), victim_labels=np.array([3, 4]),
                          victim_cost=(0.5, 1.0), final_labels=np.array([3, 9]))
    assert s == {"final_exit_fidelity": 0.5,
                 "final_exit_efficiency_gap": pytest.approx(1.0 / 0.75 - 1.0)}
    full = final_exit_scores(victim_exits=np.array([1, 1]), victim_labels=np.array([3, 4]),
                             victim_cost=(0.5, 1.0), final_labels=np.array([3, 4]))
    assert full == {"final_exit_fidelity": 1.0, "final_exit_efficiency_gap": 0.0}


def test_exit_estimation_accuracy_alignment():
    served = np.array([0, 1, -1, 2])  # -1: refused query, ignored
    assert exit_estimation_accuracy(np.array([0, 2, 5, 2]), served) == pytest.approx(2 / 3)
    assert exit_estimation_accuracy(None, served) is None
    with pytest.raises(ValueError, match="one estimate per query"):
        exit_estimation_accuracy(np.array([0, 1]), served)


def test_defense_costs_identity_is_zero():
    lat = np.array([1.0, 2.0, 3.0, 4.0])
    c = defense_costs(labels_def=np.array([1, 2, 3, 4]), labels_undef=np.array([1, 2, 3, 4]),
                      y_true=np.array([1, 2, 3, 0]), latency_def=lat, latency_undef=lat,
                      latency_full=np.full(4, 5.0), cost_def=np.ones(4), cost_undef=np.ones(4))
    assert c["benign_accuracy_drop"] == 0 and c["latency_overhead_p50"] == 0
    assert c["compute_overhead"] == 0 and c["speedup_retained"] == pytest.approx(1.0)
    padded = defense_costs(labels_def=np.array([1, 2, 3, 4]), labels_undef=np.array([1, 2, 3, 4]),
                           y_true=np.array([1, 2, 3, 0]), latency_def=np.full(4, 5.0),
                           latency_undef=lat, latency_full=np.full(4, 5.0),
                           cost_def=np.ones(4), cost_undef=np.ones(4))
    assert padded["speedup_retained"] == pytest.approx(0.0)
    assert padded["latency_overhead_p50"] == pytest.approx(5.0 / 2.5 - 1)


def test_leakage_separable_vs_independent():
    rng = np.random.default_rng(0)
    exits = rng.integers(0, 4, 4000)
    separable = (exits + 1) * 1e-4 * np.exp(0.01 * rng.standard_normal(4000))
    noise = rng.lognormal(0, 0.3, 4000) * 1e-4
    assert leakage_bits(separable, exits) == pytest.approx(2.0, abs=0.1)
    assert leakage_bits(noise, exits) < 0.05
    assert bayes_exit_accuracy(separable, exits) > 0.99
    assert bayes_exit_accuracy(noise, exits) < 0.35


@given(st.lists(st.integers(0, 3), min_size=1, max_size=50), st.data())
def test_agreement_kappa_bounds(a, data):
    b = data.draw(st.lists(st.integers(0, 3), min_size=len(a), max_size=len(a)))
    a, b = np.array(a), np.array(b)
    assert 0.0 <= exit_agreement(a, b) <= 1.0
    assert -1.0 <= cohen_kappa(a, b, 4) <= 1.0
    assert exit_agreement(a, a) == 1.0 and cohen_kappa(a, a, 4) == 1.0
    assert 0.0 <= exit_distribution_tv(a, b, 4) <= 1.0


def test_bayes_exit_accuracy_matches_the_analytic_bound():
    rng = np.random.default_rng(4)
    exits = rng.integers(0, 2, 2000)
    lat = np.exp(np.where(exits == 1, 1.0, 0.0) + rng.normal(0, 0.5, 2000))
    # two equal Gaussians one unit apart, sd 0.5: Bayes accuracy = Phi(1) = 0.841
    assert abs(bayes_exit_accuracy(lat, exits) - 0.841) < 0.03


def test_bayes_exit_accuracy_sees_a_rare_well_separated_exit():
    rng = np.random.default_rng(1)
    exits = np.zeros(600, dtype=np.int64)
    exits[:6] = 1  # 1% of queries, far from the bulk
    lat = np.where(exits == 1, 4e-4, 1e-4) * np.exp(0.02 * rng.standard_normal(600))
    assert bayes_exit_accuracy(lat, exits) == pytest.approx(1.0)


def test_bayes_exit_accuracy_small_or_single_exit_is_the_majority_rate():
    assert bayes_exit_accuracy(np.array([1e-4, 2e-4, 3e-4]), np.array([0, 0, 1])) == pytest.approx(2 / 3)
    assert bayes_exit_accuracy(np.full(50, 1e-4), np.full(50, 2)) == 1.0
    assert bayes_exit_accuracy(np.zeros(0), np.zeros(0, dtype=np.int64)) == 0.0


def _costs(latency_def, labels_def=None, n=4):
    lat = np.array([1.0, 2.0, 3.0, 4.0])
    labels = np.array([1, 2, 3, 4])
    return defense_costs(labels_def=labels if labels_def is None else labels_def,
                         labels_undef=labels, y_true=np.array([1, 2, 3, 0]),
                         latency_def=latency_def, latency_undef=lat,
                         latency_full=np.full(4, 5.0), cost_def=np.ones(4), cost_undef=np.ones(4))


def test_defense_that_answers_nothing_scores_the_worst_costs():
    c = _costs(np.full(4, np.nan), labels_def=np.full(4, -1))
    assert c["benign_accuracy_drop"] == pytest.approx(0.75)  # the victim's whole accuracy
    assert c["benign_refusal_rate"] == 1.0 and c["speedup_retained"] == 0.0
    assert c["latency_overhead_p50"] is None and c["latency_overhead_p99"] is None
    assert c["compute_overhead"] is None


def test_speedup_retained_counts_refused_queries_as_no_speedup():
    half = _costs(np.array([1.0, 2.0, np.nan, np.nan]), labels_def=np.array([1, 2, -1, -1]))
    assert half["benign_refusal_rate"] == 0.5
    # the two answered queries keep (5/1.5 - 1) / (5/2.5 - 1) of the speed-up; half are refused
    assert half["speedup_retained"] == pytest.approx(0.5 * (5 / 1.5 - 1) / (5 / 2.5 - 1))


@given(st.integers(0, 2**31), st.integers(2, 6), st.integers(20, 300))
def test_tied_latencies_never_score_below_chance_or_leak(seed, exits_count, n):
    rng = np.random.default_rng(seed)
    exits = rng.integers(0, exits_count, n)
    tied = np.full(n, 3e-3)  # a pad to a constant
    assert bayes_exit_accuracy(tied, exits) >= majority_exit_rate(exits)
    assert bayes_exit_accuracy(tied, exits) <= majority_exit_rate(exits) + 1e-12
    assert leakage_bits(tied, exits) == 0.0


def test_mostly_tied_latencies_stay_near_chance():
    rng = np.random.default_rng(2)
    exits = rng.integers(0, 4, 600)
    lat = np.full(600, 3e-3)
    overrun = rng.random(600) < 0.01  # a few overruns keep their own, exit-independent latency
    lat[overrun] = 3e-3 * (1 + rng.random(overrun.sum()))
    chance = majority_exit_rate(exits)
    assert chance <= bayes_exit_accuracy(lat, exits) <= chance + 0.02
    assert leakage_bits(lat, exits) <= 0.05
