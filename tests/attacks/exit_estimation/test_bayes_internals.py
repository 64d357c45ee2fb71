"""The Bayesian segmentation: binned + refined answers match the exact dynamic program."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from attacks.exit_estimation import bayes_segmentation
from attacks.exit_estimation.bayes import BayesEstimator
from attacks.exit_estimation.normal_gamma import (
    NormalGammaPrior,
    bin_sorted,
    log_marginal,
    map_segmentations,
    segment_scores,
)


def test_segment_scores_equal_sequential_student_t_predictives():
    z = np.sort(np.random.default_rng(0).normal(size=7))
    prior = NormalGammaPrior(alpha0=1.5, beta0=0.3, kappa0=0.2, mu0=0.1)
    L = segment_scores(bin_sorted(z, 100), prior)
    # chain rule: product of one-point marginals after sequential conjugate updates
    a, b, k, m, total = prior.alpha0, prior.beta0, prior.kappa0, prior.mu0, 0.0
    for x in z[:5]:
        p = NormalGammaPrior(a, b, k, m)
        total += float(log_marginal(np.array(1.0), np.array(x), np.array(x * x), p))
        b += k * (x - m) ** 2 / (2 * (k + 1))
        m = (k * m + x) / (k + 1)
        k += 1
        a += 0.5
    np.testing.assert_allclose(L[0, 5], total, rtol=1e-10)
    assert np.isneginf(L[3, 2]) and np.isneginf(L[2, 2])


def test_map_segmentation_is_the_brute_force_optimum():
    rng = np.random.default_rng(1)
    z = np.sort(np.concatenate([rng.normal(0, 0.3, 6), rng.normal(2, 0.3, 6)]))
    L = segment_scores(bin_sorted(z, 100), NormalGammaPrior())
    best = max((L[0, i] + L[i, j] + L[j, 12], (i, j)) for i in range(1, 12)
                for j in range(i + 1, 12))
    assert tuple(map_segmentations(L, 3)[3]) == best[1]


def test_binned_refined_matches_exact():
    rng = np.random.default_rng(2)
    z = np.sort(np.concatenate([rng.normal(m, 0.15, 500) for m in (0.0, 1.0, 2.2)]))
    exact = bayes_segmentation(z, 3, max_bins=len(z), membership=False)
    fast = bayes_segmentation(z, 3, max_bins=60, refine_bins=2, membership=True)
    np.testing.assert_array_equal(fast.cuts, exact.cuts)
    assert fast.num_bins <= 60 and fast.membership.shape == (len(z), 3)
    np.testing.assert_allclose(fast.membership.sum(axis=1), 1.0)


def test_k_posterior_is_a_distribution_peaking_at_truth():
    rng = np.random.default_rng(3)
    z = np.sort(np.concatenate([rng.normal(m, 0.1, 300) for m in (0.0, 1.0, 2.0, 3.0)]))
    fit = bayes_segmentation(z, None, max_segments=6)
    assert fit.num_segments == 4
    assert abs(fit.k_posterior.sum() - 1) < 1e-12 and np.argmax(fit.k_posterior) == 3
    assert np.isfinite(logsumexp(np.log(fit.k_posterior + 1e-300)))


def _ladder_trace(weights, n, seed, spread=0.04):
    """Log-normal latencies around 1, 2, 3, ... ms, exits drawn with ``weights``."""
    rng = np.random.default_rng(seed)
    exits = rng.choice(len(weights), size=n, p=np.asarray(weights) / np.sum(weights))
    centers = (np.arange(len(weights)) + 1.0) * 1e-3
    return np.exp(rng.normal(np.log(centers[exits]), spread)), exits


def test_penalised_occupancy_keeps_a_dominant_exit_whole_and_places_it_on_the_ladder():
    lat, exits = _ladder_trace([0.2, 0.78, 0.01, 0.01], 500, 3)
    cost = (0.25, 0.5, 0.75, 1.0)
    given = BayesEstimator().estimate(lat, 4, np.random.default_rng(0), cost_fraction=cost)
    pen = BayesEstimator(occupied="penalised").estimate(lat, 4, np.random.default_rng(0),
                                                        cost_fraction=cost)
    assert np.mean(given.exits == exits) < 0.6  # four groups forced: the dominant one split
    assert np.mean(pen.exits == exits) > 0.95
    assert pen.num_exits == 4 and pen.posterior.shape == (500, 4)
    assert np.all(np.diff(pen.boundaries) >= 0)


def test_penalised_occupancy_maps_an_unused_middle_exit_to_its_index():
    lat, exits = _ladder_trace([0.3, 0.0, 0.35, 0.35], 600, 4)
    pen = BayesEstimator(occupied="penalised").estimate(
        lat, 4, np.random.default_rng(0), cost_fraction=(0.25, 0.5, 0.75, 1.0))
    assert set(np.unique(pen.exits)) == {0, 2, 3}
    assert np.mean(pen.exits == exits) > 0.97


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.01, 0.05, 0.3, 1.0]), min_size=2, max_size=6)
       .filter(lambda w: sum(x > 0 for x in w) >= 1),
       st.integers(2, 400), st.integers(0, 10_000))
def test_penalised_occupancy_answers_every_mix_with_k_exits(weights, n, seed):
    lat, _ = _ladder_trace(weights, n, seed)
    k = len(weights)
    est = BayesEstimator(occupied="penalised").estimate(lat, k, np.random.default_rng(seed))
    assert est.num_exits == k and est.exits.shape == (n,)
    assert est.exits.min() >= 0 and est.exits.max() < k
    order = np.argsort(lat, kind="stable")
    assert np.all(np.diff(est.exits[order]) >= 0)  # monotone in latency
