"""The realistic default timing: seeded, victim-specific departures, the corpus shape."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.metrics.leakage import bayes_exit_accuracy
from harness.timing.models import REALISTIC_LEVELS, REALISTIC_SHAPE, RealisticTiming

FRAC = (0.171, 0.419, 0.668, 1.0)


def test_same_seed_same_latencies_and_any_machine_needs_nothing_recorded():
    t = RealisticTiming()
    exits = np.arange(400) % 4
    a = t.latencies(exits, FRAC, np.random.default_rng(3))
    b = t.latencies(exits, FRAC, np.random.default_rng(3))
    c = t.latencies(exits, FRAC, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert t.describe()["mode"] == "realistic" and t.describe()["profile_hash"] is None


def test_exits_depart_from_affine_per_victim_but_stay_ordered():
    t = RealisticTiming()
    clean = t.exit_latencies(FRAC)
    affine = t.base_s + np.asarray(FRAC) * t.full_s
    assert np.all(np.diff(clean) > 0)
    departure = clean / affine - 1
    assert np.all(np.abs(departure) < 0.25) and np.any(np.abs(departure) > 1e-3)
    np.testing.assert_array_equal(clean, RealisticTiming().exit_latencies(FRAC))  # same victim
    other = t.exit_latencies((0.2, 0.4, 0.7, 1.0)) / (t.base_s + np.array([0.2, 0.4, 0.7, 1.0])
                                                      * t.full_s) - 1
    assert not np.allclose(other, departure)  # another victim departs otherwise
    np.testing.assert_allclose(RealisticTiming(deviation=0.0).exit_latencies(FRAC), affine)


def test_per_query_shape_follows_the_corpus_table_for_every_exit():
    t = RealisticTiming()
    n = 40_000
    exits = np.repeat([0, 3], n // 2)
    lat = t.latencies(exits, FRAC, np.random.default_rng(0))
    clean = t.exit_latencies(FRAC)
    for k in (0, 3):
        shape = np.log(lat[exits == k] / clean[k])
        for q in (0.05, 0.25, 0.5, 0.75, 0.95):
            assert np.quantile(shape, q) == pytest.approx(np.interp(q, REALISTIC_LEVELS,
                                                                     REALISTIC_SHAPE), abs=0.02)
    assert np.interp(0.999, REALISTIC_LEVELS, REALISTIC_SHAPE) > 0.8  # a heavy right tail


def test_the_side_channel_is_noisy_but_present():
    t = RealisticTiming()
    exits = np.arange(4000) % 4
    lat = t.latencies(exits, FRAC, np.random.default_rng(1))
    assert 0.4 < bayes_exit_accuracy(lat, exits) < 0.95
    quiet = RealisticTiming(spread=0.1).latencies(exits, FRAC, np.random.default_rng(1))
    assert bayes_exit_accuracy(quiet, exits) > 0.99


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.05, 1.0), min_size=2, max_size=8, unique=True), st.integers(0, 2**32 - 1))
def test_latencies_are_positive_and_finite_for_any_victim(fracs, seed):
    frac = tuple(sorted(fracs))
    exits = np.random.default_rng(seed).integers(0, len(frac), 50)
    lat = RealisticTiming().latencies(exits, frac, np.random.default_rng(seed))
    assert np.all(np.isfinite(lat)) and np.all(lat > 0)


@pytest.mark.parametrize("params", [{"spread": -1}, {"deviation": 2}, {"full_s": 0},
                                    {"base_s": float("nan")}])
def test_bad_parameters_are_refused(params):
    with pytest.raises(ConfigError, match="timing=realistic"):
        RealisticTiming(**params)
