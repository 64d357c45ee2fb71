"""Exit-decision defenses: exit_noise and confidence_noise change which exit answers, the
client still gets that exit's real probabilities, and every new defense is registered."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from defenses.confidence_noise import ConfidenceNoise, noisy_probs
from defenses.exit_noise import ExitNoise
from harness.model import exit_probabilities
from harness.stages import QUANTILE_LEVELS, ServerInfo, StageBatch
from harness.strategy import MaxProbPolicy, OutputStrategy, answering_probs
from harness.testing import conformance_cases, tiny_endpoint
from tests.defenses.batches import PolicyOracle

NEW_DEFENSES = ("pad_constant", "pad_bucket", "jitter", "timeguard", "exit_noise",
                "confidence_noise")


def respond(victim, defense, seed=4):
    """The attacker pool through a fresh defense (None: undefended), in batches of 32."""
    if defense is not None:
        defense.reset()
    endpoint = tiny_endpoint(victim, defense, seed=seed)
    pool = victim.data.attacker.x
    return [endpoint.respond(pool[i:i + 32]) for i in range(0, len(pool), 32)]


def joined(responses, field):
    return np.concatenate([getattr(r, field) for r in responses])


def test_exit_noise_with_p0_answers_exactly_like_none(tiny_victim):
    plain, noisy = respond(tiny_victim, None), respond(tiny_victim, ExitNoise(p=0.0))
    for field in ("exits", "probs", "latency_s", "cost_fraction", "admitted"):
        np.testing.assert_array_equal(joined(noisy, field), joined(plain, field))


def test_exit_noise_with_p1_never_answers_from_the_policy_exit(tiny_victim):
    policy = joined(respond(tiny_victim, None), "exits")
    noisy = respond(tiny_victim, ExitNoise(p=1.0))
    exits = joined(noisy, "exits")
    assert len(np.unique(policy)) == 3 and not np.any(exits == policy)
    per_exit = exit_probabilities(tiny_victim.model, tiny_victim.data.attacker.x)
    np.testing.assert_allclose(joined(noisy, "probs"), answering_probs(per_exit, exits),
                               atol=1e-6)


INFO = ServerInfo(num_exits=4, num_classes=3, cost_fraction=(0.2, 0.4, 0.7, 1.0),
                  latency_quantiles=((1e-4,) * 7,) * 4, quantile_levels=QUANTILE_LEVELS,
                  timing="analytic", output="probs",
                  strategy=OutputStrategy(MaxProbPolicy(), (0.9, 0.9, 0.9)))


@settings(max_examples=30, derandomize=True, database=None, deadline=None)
@given(st.floats(0.0, 1.0), st.integers(0, 2**32))
def test_exit_noise_switches_a_share_p_uniformly_to_other_exits(p, seed):
    rng = np.random.default_rng(seed)
    exits = rng.integers(0, 4, 3000)
    oracle = PolicyOracle(exits)
    batch = StageBatch(inputs=np.zeros((3000, 2)), client_id="c", rng=rng, server=INFO,
                       exit_view=oracle)
    chosen = ExitNoise(p=p).choose_exits(batch)
    switched = chosen != exits
    assert chosen.dtype.kind == "i" and chosen.min() >= 0 and chosen.max() <= 3
    # the policy was evaluated no deeper than the exit that answers (nothing computed past it)
    assert np.all(oracle.depth <= chosen) and np.all(oracle.depth[~switched] == exits[~switched])
    assert abs(switched.mean() - p) < 0.04
    if switched.sum() > 300:  # the other exits are equally likely
        shift = (chosen - exits)[switched] % 4
        assert np.all(np.abs(np.bincount(shift, minlength=4)[1:] / switched.sum() - 1 / 3) < 0.06)


def test_confidence_noise_moves_exits_but_answers_with_real_probabilities(tiny_victim):
    per_exit = exit_probabilities(tiny_victim.model, tiny_victim.data.attacker.x)
    policy = joined(respond(tiny_victim, None), "exits")
    assert np.array_equal(joined(respond(tiny_victim, ConfidenceNoise(scale=0.0)), "exits"),
                          policy)
    noisy = respond(tiny_victim, ConfidenceNoise(scale=2.0))
    exits = joined(noisy, "exits")
    assert 0.1 < np.mean(exits != policy) < 0.9
    np.testing.assert_allclose(joined(noisy, "probs"), answering_probs(per_exit, exits),
                               atol=1e-6)


@settings(max_examples=30, derandomize=True, database=None, deadline=None)
@given(st.integers(0, 2**32), st.floats(0.0, 5.0))
def test_noisy_probs_are_probability_rows(seed, scale):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(5, 0.3), size=20)
    probs[0] = np.eye(5)[0]  # exact zeros stay valid
    out = noisy_probs(probs, scale, rng)
    assert np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0)
    if scale == 0:
        np.testing.assert_allclose(out, probs, atol=1e-12)


def test_new_defenses_are_registered_for_the_conformance_kit():
    """tests/harness/testing/test_conformance.py runs check_defense on every registered defense."""
    registered = {case.values[0].name for case in conformance_cases("defense")}
    assert set(NEW_DEFENSES) <= registered

