"""Timing defenses: padding hides the exit, overruns are counted, jitter and buckets only add
time, timeguard's keyed delays are stable across repeats and near-duplicates."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defenses.jitter import Jitter
from defenses.padding import PadBucket, PadConstant
from defenses.timeguard import TimeGuard
from harness.cell.server import defense_secret, describe_server
from harness.errors import ComponentFailure
from harness.io.provenance import MachineInfo
from harness.metrics.leakage import bayes_exit_accuracy, leakage_bits
from harness.stages import QUANTILE_LEVELS, Defense, ServerInfo, StageBatch
from harness.strategy import MaxProbPolicy, OutputStrategy
from harness.testing import tiny_endpoint
from harness.timing.models import AnalyticTiming, ReplayTiming
from harness.timing.profiles import LatencyProfile

PROPERTY = settings(max_examples=40, derandomize=True, database=None, deadline=None)
EXIT_MEDIANS = (1e-4, 2e-4, 4e-4)
INFO = ServerInfo(num_exits=3, num_classes=2, cost_fraction=(0.25, 0.5, 1.0),
                  latency_quantiles=tuple(tuple(m * (0.8 + 0.4 * q) for q in QUANTILE_LEVELS)
                                          for m in EXIT_MEDIANS),
                  quantile_levels=QUANTILE_LEVELS, timing="analytic", output="probs",
                  strategy=OutputStrategy(MaxProbPolicy(), (0.9, 0.9)), secret=b"test key")


def stage_batch(latency, exits=None, inputs=None, seed=0, info=INFO) -> StageBatch:
    """A shape_latency batch of plain arrays (inputs default to one row per latency)."""
    latency = np.asarray(latency, dtype=np.float64)
    n = len(latency)
    exits = np.zeros(n, dtype=np.int64) if exits is None else np.asarray(exits)
    inputs = np.zeros((n, 1, 2, 2), np.float32) if inputs is None else np.asarray(inputs)
    return StageBatch(inputs=inputs, client_id="c", rng=np.random.default_rng(seed),
                      server=info, policy_exits=exits, exits=exits, latency_s=latency)


def fresh(defense: Defense) -> Defense:
    defense.reset()
    return defense


latencies = st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=30).map(np.array)


# -- pad_constant -----------------------------------------------------------------------


def replay_timing(victim) -> ReplayTiming:
    """A recorded-looking profile of the tiny victim: log-normal latencies per exit."""
    rng = np.random.default_rng(7)
    samples = tuple(tuple(m * np.exp(0.1 * rng.standard_normal(200))) for m in EXIT_MEDIANS)
    machine = MachineInfo("linux", "test cpu", 2, "3.11", "torch", "ort", None)
    return ReplayTiming(LatencyProfile(victim.name, victim.weights_hash, "torch", "cpu",
                                       samples, machine, "now"))


def serve_pool(victim, defense, timing, repeats=4):
    """Latencies and exits of the attacker pool, ``repeats`` times, in batches of 32."""
    endpoint = tiny_endpoint(victim, defense, timing=timing, seed=3)
    pool = np.concatenate([victim.data.attacker.x] * repeats)
    responses = [endpoint.respond(pool[i:i + 32]) for i in range(0, len(pool), 32)]
    return (np.concatenate([r.latency_s for r in responses]),
            np.concatenate([r.exits for r in responses]))


@pytest.fixture(scope="module", params=["analytic", "replay"])
def padded_pool(request, tiny_victim):
    """(undefended latencies, padded latencies, exits, pad_constant's report) of the pool."""
    model = AnalyticTiming() if request.param == "analytic" else replay_timing(tiny_victim)
    raw, exits = serve_pool(tiny_victim, None, model)
    defense = fresh(PadConstant())
    padded, padded_exits = serve_pool(tiny_victim, defense, model)
    np.testing.assert_array_equal(padded_exits, exits)
    return raw, padded, exits, defense.report()


def test_pad_constant_makes_latency_independent_of_the_exit(padded_pool):
    raw, padded, exits, report = padded_pool
    assert np.bincount(exits).min() >= 100 and leakage_bits(raw, exits) > 1.0  # leaks undefended
    assert leakage_bits(padded, exits) <= 0.05
    assert report["answered"] == len(exits)
    assert report["overruns"] == np.count_nonzero(padded > padded.min())
    assert report["overrun_rate"] == report["overruns"] / len(exits) < 0.03


def test_pad_constant_leaves_timing_only_exit_accuracy_at_chance(padded_pool):
    _, padded, exits, _ = padded_pool
    chance = np.bincount(exits).max() / len(exits)
    assert abs(bayes_exit_accuracy(padded, exits) - chance) <= 0.02


def test_pad_constant_counts_overruns_exactly(tiny_victim):
    raw, _ = serve_pool(tiny_victim, None, AnalyticTiming(), repeats=1)
    target = float(np.quantile(raw, 0.6))
    defense = fresh(PadConstant(target_s=target))
    padded, _ = serve_pool(tiny_victim, defense, AnalyticTiming(), repeats=1)
    np.testing.assert_array_equal(padded, np.maximum(raw, target))
    overruns = int(np.count_nonzero(raw > target))
    assert 0 < overruns < len(raw)
    assert defense.report() == {"answered": len(raw), "overruns": overruns,
                                "overrun_rate": overruns / len(raw)}
    defense.reset()
    assert defense.report() == {"answered": 0, "overruns": 0, "overrun_rate": 0.0}


def test_pad_constant_defaults_to_the_full_networks_high_quantile():
    out = fresh(PadConstant()).shape_latency(stage_batch([1e-5, 2e-4]))
    np.testing.assert_allclose(out, INFO.full_latency(0.99))
    out = fresh(PadConstant(quantile=0.5)).shape_latency(stage_batch([1e-5, 2e-4]))
    np.testing.assert_allclose(out, EXIT_MEDIANS[-1])


def test_defenses_report_nothing_by_default():
    assert Defense().report() == {}


# -- pad_bucket and jitter --------------------------------------------------------------


@PROPERTY
@given(latencies, st.sampled_from([None, 1e-5, 3e-4, 0.1]), st.floats(0.01, 2.0))
def test_pad_bucket_rounds_up_to_a_whole_bucket(latency, width_s, width):
    defense = fresh(PadBucket(width=width, width_s=width_s))
    out = defense.shape_latency(stage_batch(latency))
    w = width_s if width_s is not None else width * INFO.full_latency(0.5)
    assert np.all(out >= latency) and np.all(out - latency < w * (1 + 1e-9))
    np.testing.assert_allclose(out / w, np.round(out / w), rtol=0, atol=1e-6)


@PROPERTY
@given(latencies, st.sampled_from(["uniform", "exponential"]), st.floats(0.0, 3.0),
       st.integers(0, 2**32))
def test_jitter_only_adds_a_seeded_delay(latency, distribution, scale, seed):
    defense = fresh(Jitter(distribution=distribution, scale=scale))
    out = defense.shape_latency(stage_batch(latency, seed=seed))
    assert np.all(out >= latency) and np.all(np.isfinite(out))
    if distribution == "uniform":
        assert np.all(out - latency <= scale * INFO.full_latency(0.5) * (1 + 1e-9))
    np.testing.assert_array_equal(out, defense.shape_latency(stage_batch(latency, seed=seed)))


def test_jitter_delays_have_the_requested_scale():
    latency = np.full(4000, 1e-4)
    s = INFO.full_latency(0.5)
    for distribution, mean in (("uniform", 0.25 * s), ("exponential", 0.5 * s)):
        delay = fresh(Jitter(distribution, 0.5)).shape_latency(stage_batch(latency)) - latency
        assert delay.mean() == pytest.approx(mean, rel=0.05)


# -- timeguard --------------------------------------------------------------------------

STEP = TimeGuard().resolution  # the default grid step for inputs in [0, 1]


def guard_delays(inputs, exits, latency=None, defense=None, info=INFO) -> np.ndarray:
    latency = np.full(len(inputs), 1e-5) if latency is None else latency
    out = fresh(defense or TimeGuard()).shape_latency(
        stage_batch(latency, exits, inputs, info=info))
    return out - latency


def test_timeguard_repeats_get_the_same_delay_across_batches_and_positions():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (20, 1, 4, 4)).astype(np.float32)
    first = guard_delays(x, np.zeros(20, dtype=np.int64))
    assert len(np.unique(first)) == 20 and np.all(first > 0)
    order = rng.permutation(20)
    mixed = np.concatenate([rng.uniform(0, 1, (5, 1, 4, 4)).astype(np.float32), x[order]])
    again = guard_delays(mixed, np.zeros(25, dtype=np.int64))[5:]
    np.testing.assert_array_equal(again, first[order])
    other_key = dataclasses.replace(INFO, secret=b"another key")
    assert not np.any(guard_delays(x, np.zeros(20, dtype=np.int64), info=other_key) == first)


def test_timeguard_through_the_endpoint_repeats_wait_the_same(tiny_victim):
    timing = AnalyticTiming(sigma=0.0, tail_prob=0.0)  # the computation itself repeats exactly
    x = tiny_victim.data.attacker.x[:12]
    endpoint = tiny_endpoint(tiny_victim, fresh(TimeGuard()), timing=timing)
    a = endpoint.respond(x)
    b = endpoint.respond(np.concatenate([x[6:], x[:6]]))
    np.testing.assert_array_equal(np.concatenate([a.latency_s[6:], a.latency_s[:6]]), b.latency_s)
    plain = tiny_endpoint(tiny_victim, None, timing=timing).respond(x)
    last = a.exits == 2
    assert last.any() and (~last).any()
    np.testing.assert_array_equal(a.latency_s[last], plain.latency_s[last])
    np.testing.assert_array_equal(a.probs, plain.probs)
    assert np.all(a.latency_s[~last] > plain.latency_s[~last])


@PROPERTY
@given(st.integers(0, 2**32), st.floats(0.0, 0.2))
def test_timeguard_near_duplicates_get_the_same_delay(seed, size):
    rng = np.random.default_rng(seed)
    centre = rng.integers(0, 17, (6, 1, 4, 4)) * STEP
    x = centre + rng.uniform(-0.25, 0.25, centre.shape) * STEP  # off the cell boundaries
    nudged = x + rng.uniform(-size, size, x.shape) * STEP  # stays in the cell
    exits = rng.integers(0, 2, 6)
    np.testing.assert_array_equal(guard_delays(x, exits), guard_delays(nudged, exits))


@PROPERTY
@given(st.lists(st.floats(1e-6, 1e-3), min_size=1, max_size=20).map(np.array),
       st.integers(0, 2**32), st.floats(0.0, 1.0))
def test_timeguard_never_passes_the_cap_and_leaves_the_last_exit(latency, seed, quantile):
    rng = np.random.default_rng(seed)
    n = len(latency)
    exits = rng.integers(0, 3, n)
    x = rng.uniform(0, 1, (n, 1, 2, 2))
    defense = TimeGuard(quantile=quantile)
    delay = guard_delays(x, exits, latency, defense)
    cap = INFO.full_latency(quantile)
    assert np.all(delay >= 0) and np.all(latency + delay <= np.maximum(latency, cap) * (1 + 1e-12))
    assert np.all(delay[exits == 2] == 0)
    headroom = np.maximum(cap - np.array(EXIT_MEDIANS), 0)[exits]
    assert np.all(delay <= headroom)


def test_timeguard_refuses_to_run_without_a_server_key(tiny_victim):
    endpoint = tiny_endpoint(tiny_victim, fresh(TimeGuard()))
    endpoint.server = dataclasses.replace(endpoint.server, secret=b"")
    with pytest.raises(ComponentFailure, match="secret"):
        endpoint.respond(tiny_victim.data.attacker.x[:4])


def test_the_server_key_depends_on_seed_and_salt_and_stays_out_of_repr(tiny_victim):
    keys = {defense_secret(0, (1, 2)), defense_secret(1, (1, 2)), defense_secret(0, (1, 3))}
    assert len(keys) == 3 and all(len(k) == 32 for k in keys)
    info = describe_server(tiny_victim, tiny_endpoint(tiny_victim).served, AnalyticTiming(),
                           "probs", np.random.default_rng(0), secret=defense_secret(0, (1, 2)))
    assert info.secret == defense_secret(0, (1, 2)) and "secret" not in repr(info)
