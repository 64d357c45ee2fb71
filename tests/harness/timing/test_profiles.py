from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from harness.errors import CacheError, ConfigError
from harness.io.provenance import machine_info
from harness.timing.models import ReplayTiming
from harness.timing.profiles import LatencyProfile
from harness.timing.recording import record_profile
from victims.serving import OnnxBackend, TorchBackend


@pytest.fixture(scope="module")
def profile(victim, tmp_path_factory):
    served = TorchBackend(warmup=1).load(victim, "cpu", tmp_path_factory.mktemp("c"))
    return record_profile(served, victim, samples_per_exit=15, seed=3)


def test_calibrate_records_every_exit(victim, profile):
    assert profile.victim == "tiny" and profile.weights_hash == victim.weights_hash
    assert (profile.backend, profile.device) == ("torch", "cpu")
    assert [len(s) for s in profile.samples] == [15, 15, 15]
    assert all(v > 0 for s in profile.samples for v in s)
    assert profile.machine.cpu_count >= 1 and profile.machine.gpu is None
    profile.validate_for("tiny", 3, weights_hash=victim.weights_hash)


def test_calibrate_onnx_and_more_samples_than_inputs(victim, tmp_path):
    served = OnnxBackend(warmup=0).load(victim, "cpu", tmp_path)
    prof = record_profile(served, victim, samples_per_exit=25)  # 75 requests, 60 test inputs
    assert prof.backend == "onnx" and [len(s) for s in prof.samples] == [25] * 3


def test_calibrate_rejects_bad_samples_per_exit(victim, tmp_path):
    served = TorchBackend().load(victim, "cpu", tmp_path)
    with pytest.raises(ConfigError, match="samples_per_exit"):
        record_profile(served, victim, samples_per_exit=0)


def test_save_load_roundtrip_and_hash(profile, tmp_path):
    path = profile.save(tmp_path / "sub" / "profile.json")
    loaded = LatencyProfile.load(path)
    assert loaded == profile and loaded.hash == profile.hash
    assert len(profile.hash) == 64
    other = dataclasses.replace(profile, samples=(*profile.samples[:2], (1.0,)))
    assert other.hash != profile.hash
    assert [p.name for p in path.parent.iterdir()] == ["profile.json"]


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(CacheError, match="does not exist"):
        LatencyProfile.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CacheError, match="not JSON"):
        LatencyProfile.load(bad)
    bad.write_text(json.dumps({"version": 1, "victim": "x"}))
    with pytest.raises(CacheError, match="malformed"):
        LatencyProfile.load(bad)
    bad.write_text(json.dumps({"version": 99}))
    with pytest.raises(CacheError, match="version 99"):
        LatencyProfile.load(bad)


def test_validate_for_rejects_other_victims_and_missing_exits(profile):
    with pytest.raises(ConfigError, match="recorded for victim 'tiny', not 'big'"):
        profile.validate_for("big", 3)
    with pytest.raises(ConfigError, match=r"has samples for 3 exits .* victim has 4 exits"):
        profile.validate_for("tiny", 4)
    empty = dataclasses.replace(profile, samples=(*profile.samples[:2], ()))
    with pytest.raises(ConfigError, match=r"empty: \[2\]"):
        empty.validate_for("tiny", 3)
    with pytest.raises(ConfigError, match="weights"):
        profile.validate_for("tiny", 3, weights_hash="elsewhere")


def test_profile_rejects_non_positive_latency():
    with pytest.raises(ConfigError, match="exit 1"):
        LatencyProfile("v", "h", "torch", "cpu", ((1e-4,), (0.0,)), machine_info(), "now")


def test_replay_is_seeded_and_draws_from_each_exit(profile):
    timing = ReplayTiming(profile)
    exits = np.array([0, 1, 2, 2, 1, 0] * 50)
    frac = (0.3, 0.6, 1.0)
    a = timing.latencies(exits, frac, np.random.default_rng(7))
    b = timing.latencies(exits, frac, np.random.default_rng(7))
    c = timing.latencies(exits, frac, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    for k in range(3):
        assert set(a[exits == k]) <= set(profile.samples[k])
    assert len(set(a[exits == 0])) > 1
    desc = timing.describe()
    assert desc["mode"] == "replay" and desc["profile_hash"] == profile.hash
    json.dumps(desc)


def test_replay_errors_are_clear(profile):
    timing = ReplayTiming(profile)
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="has 3 exits but the served network has 4"):
        timing.latencies(np.array([0]), (0.1, 0.2, 0.5, 1.0), rng)
    with pytest.raises(ConfigError, match=r"\[0, 2\]"):
        timing.latencies(np.array([3]), (0.3, 0.6, 1.0), rng)
