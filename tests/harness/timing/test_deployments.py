"""Realistic timing by deployment: seeded, victim-specific, each deployment its own channel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.metrics.leakage import bayes_exit_accuracy
from harness.timing.deployments import DEFAULT_DEPLOYMENT, DEPLOYMENTS, LEVELS
from harness.timing.models import RealisticTiming

FRAC = (0.171, 0.419, 0.668, 1.0)
"""digits_cnn's exit cost fractions (rounded)."""
NAMES = sorted(DEPLOYMENTS)


def test_the_default_is_the_dedicated_server_and_every_description_names_it():
    assert DEFAULT_DEPLOYMENT == "dedicated"
    assert RealisticTiming().describe() == {"mode": "realistic", "profile_hash": None,
                                            "params": {"deployment": "dedicated"}}
    overridden = RealisticTiming(deployment="shared", spread=0.3).describe()["params"]
    assert overridden == {"deployment": "shared", "spread": 0.3}


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_latencies_on_any_machine(name):
    t = RealisticTiming(deployment=name)
    exits = np.arange(400) % 4
    a = t.latencies(exits, FRAC, np.random.default_rng(3))
    np.testing.assert_array_equal(a, t.latencies(exits, FRAC, np.random.default_rng(3)))
    assert not np.array_equal(a, t.latencies(exits, FRAC, np.random.default_rng(4)))
    np.testing.assert_array_equal(a, DEPLOYMENTS[name].latencies(exits, FRAC,
                                                                 np.random.default_rng(3)))


@pytest.mark.parametrize("name", NAMES)
def test_exits_depart_from_affine_per_victim_but_stay_ordered(name):
    t = RealisticTiming(deployment=name)
    d = t.calibration
    clean = t.exit_latencies(FRAC)
    affine = d.base_s + np.asarray(FRAC) * d.full_s
    assert np.all(np.diff(clean) > 0)
    departure = clean / affine - 1
    assert np.all(np.abs(departure) < 0.25) and np.any(np.abs(departure) > 1e-3)
    np.testing.assert_array_equal(clean, RealisticTiming(deployment=name).exit_latencies(FRAC))
    other = (0.2, 0.4, 0.7, 1.0)
    other_departure = t.exit_latencies(other) / (d.base_s + np.asarray(other) * d.full_s) - 1
    assert not np.allclose(other_departure, departure)  # another victim departs otherwise
    np.testing.assert_allclose(RealisticTiming(deployment=name, deviation=0.0)
                               .exit_latencies(FRAC), affine)


@pytest.mark.parametrize("name", NAMES)
def test_per_query_shape_follows_the_deployment_table_for_every_exit(name):
    t = RealisticTiming(deployment=name)
    d = t.calibration
    exits = np.repeat([0, 3], 20_000)
    lat = t.latencies(exits, FRAC, np.random.default_rng(0))
    clean = t.exit_latencies(FRAC)
    for k in (0, 3):
        shape = np.log(lat[exits == k] / clean[k])
        for q in (0.05, 0.25, 0.5, 0.75, 0.95):
            expected = d.spread * np.interp(q, LEVELS, d.shape)
            assert np.quantile(shape, q) == pytest.approx(expected, abs=0.02)
    assert np.interp(0.999, LEVELS, d.shape) > 0.8  # a heavy right tail


def bound(deployment: str, frac: tuple[float, ...], seed: int = 1, n: int = 4000) -> float:
    exits = np.arange(n) % len(frac)
    lat = RealisticTiming(deployment=deployment).latencies(exits, frac, np.random.default_rng(seed))
    return bayes_exit_accuracy(lat, exits)


@pytest.mark.parametrize("frac", [FRAC, (0.3, 0.6, 1.0), (0.12, 0.31, 0.5, 0.75, 1.0),
                                  (0.2, 0.42, 0.64, 0.85, 0.93, 1.0)])
def test_the_dedicated_server_leaks_more_than_the_shared_machine_for_each_victim(frac):
    dedicated, shared = bound("dedicated", frac), bound("shared", frac)
    assert dedicated > shared + 0.05
    assert 0.4 < shared < 0.95


def test_digits_cnn_bounds_match_the_quiet_live_traces():
    """On a balanced mix of digits_cnn's exits: dedicated ~0.97 (the quiet live traces of
    digits_cnn, its own mix: 0.95-0.97), shared ~0.63 (its make-run cells: ~0.75)."""
    assert 0.93 < bound("dedicated", FRAC) < 1.0
    assert 0.55 < bound("shared", FRAC) < 0.75
    quiet = RealisticTiming(spread=0.1).latencies(np.arange(4000) % 4, FRAC,
                                                  np.random.default_rng(1))
    assert bayes_exit_accuracy(quiet, np.arange(4000) % 4) > 0.99


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.05, 1.0), min_size=2, max_size=8, unique=True),
       st.integers(0, 2**32 - 1), st.sampled_from(NAMES))
def test_latencies_are_positive_and_finite_for_any_victim(fracs, seed, name):
    frac = tuple(sorted(fracs))
    exits = np.random.default_rng(seed).integers(0, len(frac), 50)
    lat = RealisticTiming(deployment=name).latencies(exits, frac, np.random.default_rng(seed))
    assert np.all(np.isfinite(lat)) and np.all(lat > 0)


@pytest.mark.parametrize("params", [{"spread": -1}, {"deviation": 2}, {"full_s": 0},
                                    {"base_s": float("nan")}])
def test_bad_parameters_are_refused(params):
    with pytest.raises(ConfigError, match="timing=realistic"):
        RealisticTiming(**params)


@pytest.mark.parametrize("value", ["gpu", "Dedicated", "", 3])
def test_a_bad_deployment_gets_one_line_listing_the_choices(value):
    with pytest.raises(ConfigError) as info:
        RealisticTiming(deployment=value)
    message = str(info.value)
    assert "\n" not in message and "timing.deployment" in message
    assert all(name in message for name in NAMES)
