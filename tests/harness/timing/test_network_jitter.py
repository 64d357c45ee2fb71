"""``timing.network``: seeded round-trip jitter fitted to published measurements."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.timing.network import NETWORK_PROFILES, add_network_delay, network_profile


def test_none_adds_nothing_and_nan_stays_nan():
    lat = np.array([1e-4, np.nan, 2e-4])
    out = add_network_delay(lat, "none", np.random.default_rng(0))
    np.testing.assert_array_equal(out, lat)
    out = add_network_delay(lat, "lan", np.random.default_rng(0))
    assert np.isnan(out[1]) and np.all(out[[0, 2]] > lat[[0, 2]])


def test_same_seed_same_delays():
    lat = np.full(50, 1e-4)
    a = add_network_delay(lat, "wan", np.random.default_rng([3, 1]))
    b = add_network_delay(lat, "wan", np.random.default_rng([3, 1]))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name, p50, p99_low, p99_high", [
    ("lan", 216e-6, 0.9e-3, 1.8e-3),   # Pingmesh: p50 216 us, p99 1.26 ms
    ("wan", 35e-3, 55e-3, 110e-3),     # FCC MBA mean 34.9 ms; heavier relative tail
])
def test_profiles_match_their_sources(name, p50, p99_low, p99_high):
    rtt = network_profile(name).sample(200_000, np.random.default_rng(0))
    assert abs(np.median(rtt) / p50 - 1) < 0.03
    assert p99_low < np.quantile(rtt, 0.99) < p99_high
    assert np.max(rtt) > 3 * np.quantile(rtt, 0.99)  # a heavy right tail


def test_unknown_profile_lists_the_allowed_ones():
    with pytest.raises(ConfigError, match="none, lan, wan"):
        network_profile("5g")
    assert set(NETWORK_PROFILES) == {"none", "lan", "wan"}
