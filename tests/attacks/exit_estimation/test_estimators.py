"""Behaviour of every built-in exit estimator on planted staircases and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attacks.exit_estimation import (
    BUILTIN_ESTIMATORS,
    BayesEstimator,
    KdeEstimator,
    TrueExitsEstimator,
    staircase_exits,
    synthetic_latencies,
)
from harness.components import NAME_PATTERN
from harness.errors import ConfigError
from harness.metrics.leakage import bayes_exit_accuracy

DETECTORS = [cls for cls in BUILTIN_ESTIMATORS if not cls.reference]
COST = {3: (0.2, 0.6, 1.0), 4: (0.15, 0.45, 0.76, 1.0), 5: (0.1, 0.3, 0.5, 0.75, 1.0)}


def trace(k: int, n: int, seed: int, noise: float = 0.01, tail: float = 0.0):
    rng = np.random.default_rng(seed)
    exits = staircase_exits(k, n, rng)
    return exits, synthetic_latencies(exits, COST[k], rng, noise=noise, tail_prob=tail)


def test_registry_names_unique_snake_case_and_params_round_trip():
    names = [cls.name for cls in BUILTIN_ESTIMATORS]
    assert len(set(names)) == len(names)
    assert all(NAME_PATTERN.match(n) for n in names)
    assert [cls.name for cls in BUILTIN_ESTIMATORS if cls.reference] == ["true_exits"]
    for cls in BUILTIN_ESTIMATORS:
        est = cls()
        assert type(est)(**est.get_params()).get_params() == est.get_params()


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_planted_staircase_recovered_exactly(cls):
    exits, lat = trace(4, 400, seed=1)
    est = cls().estimate(lat, 4, np.random.default_rng(0))
    assert est.num_exits == 4 and len(est.boundaries) == 3
    np.testing.assert_array_equal(est.exits, exits)
    assert np.all(np.diff(est.boundaries) >= 0)


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_order_scale_and_monotonicity(cls):
    _exits, lat = trace(3, 300, seed=2, noise=0.05, tail=0.02)
    rng = np.random.default_rng(0)
    base = cls().estimate(lat, 3, rng)
    perm = np.random.default_rng(3).permutation(len(lat))
    shuffled = cls().estimate(lat[perm], 3, rng)
    np.testing.assert_array_equal(shuffled.exits, base.exits[perm])
    scaled = cls().estimate(lat * 7.3, 3, rng)
    np.testing.assert_array_equal(scaled.exits, base.exits)
    np.testing.assert_allclose(scaled.boundaries, base.boundaries * 7.3, rtol=1e-9)
    order = np.argsort(lat)
    assert np.all(np.diff(base.exits[order]) >= 0)
    assert base.exits.min() >= 0 and base.exits.max() < 3


@settings(max_examples=15, deadline=None)
@given(scale=st.floats(1e-3, 1e3), shift=st.floats(0, 1e-3), seed=st.integers(0, 10**6))
def test_linear_transform_is_affine_invariant(scale, shift, seed):
    _, lat = trace(3, 200, seed=seed, noise=0.03)
    rng = np.random.default_rng(0)
    est = BayesEstimator(transform="linear")
    a = est.estimate(lat, 3, rng).exits
    b = est.estimate(lat * scale + shift, 3, rng).exits
    np.testing.assert_array_equal(a, b)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), k=st.integers(1, 6), n=st.integers(8, 120))
def test_never_more_segments_than_allowed(seed, k, n):
    rng = np.random.default_rng(seed)
    lat = rng.lognormal(size=n) * 1e-4
    for cls in (BayesEstimator, KdeEstimator):
        est = cls(max_exits=4).estimate(lat, None, rng)
        assert 1 <= est.num_exits <= 4 and est.exits.max() < est.num_exits
        if k <= n:
            given_k = cls().estimate(lat, k, rng)
            assert given_k.num_exits == k and len(given_k.boundaries) == k - 1
            assert given_k.exits.max() < k


@pytest.mark.parametrize("cls", [BayesEstimator, KdeEstimator], ids=lambda c: c.name)
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("n", [500, 5000])
def test_number_of_exits_inferred(cls, k, n):
    exits, lat = trace(k, n, seed=k * n, noise=0.03, tail=0.02)
    est = cls().estimate(lat, None, np.random.default_rng(0))
    assert est.num_exits == k
    assert np.mean(est.exits == exits) > 0.95


def test_bayes_heavy_tail_close_to_bayes_optimal():
    exits, lat = trace(4, 3000, seed=11, noise=0.08, tail=0.02)
    bound = bayes_exit_accuracy(lat, exits)
    est = BayesEstimator().estimate(lat, 4, np.random.default_rng(0))
    acc = float(np.mean(est.exits == exits))
    assert acc >= bound - 0.03, (acc, bound)
    assert est.posterior is not None and est.posterior.shape == (len(lat), 4)
    np.testing.assert_allclose(est.posterior.sum(axis=1), 1.0, atol=1e-9)


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
@pytest.mark.parametrize("bad", [[], [1e-4, np.nan], [1e-4, np.inf], [1e-4, -1e-4], [0.0, 1e-4]])
def test_bad_latencies_raise(cls, bad):
    with pytest.raises(ConfigError):
        cls().estimate(np.asarray(bad, dtype=float), None, np.random.default_rng(0))


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
@pytest.mark.parametrize("k", [0, -1, 65, 2.5, True])
def test_bad_num_exits_raise(cls, k):
    lat = np.linspace(1e-4, 2e-4, 10)
    with pytest.raises(ConfigError):
        cls().estimate(lat, k, np.random.default_rng(0))


def test_true_exits_returns_truth_and_needs_it():
    exits, lat = trace(4, 200, seed=5, noise=0.05)
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError):
        TrueExitsEstimator().estimate(lat, 4, rng)
    est = TrueExitsEstimator().estimate(lat, 4, rng, true_exits=exits)
    np.testing.assert_array_equal(est.exits, exits)
    assert est.num_exits == 4 and np.all(np.diff(est.boundaries) > 0)
    with pytest.raises(ConfigError):
        TrueExitsEstimator().estimate(lat, 2, rng, true_exits=exits)
