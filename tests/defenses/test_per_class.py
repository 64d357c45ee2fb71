"""Per-class exiting (``pce``) and confidence-guided randomness (``cgr``): balance across
classes at the victim's cost, CGR's seeded randomness and its privacy level, the
strategies' invariants, their parameters (cells scored against the deployed
strategy: tests/harness/cell/test_deployed_scoring.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defenses.per_class import ConfidenceGuidedRandomness, PerClassExiting
from defenses.stack import DefenseStack
from harness.components import build_component
from harness.deployed import (
    ConfidenceGuidedStrategy,
    PerClassStrategy,
    calibrate_per_class,
    cgr_epsilon,
    cgr_mix,
    class_exit_imbalance,
    strategy_from_json,
)
from harness.errors import ConfigError
from harness.model import exit_probabilities
from harness.run.config import parse_overrides
from harness.run.grid import expand_grid
from harness.serving.own_server import forced_exit
from harness.stages import declared_strategy
from harness.strategy import MaxProbPolicy, OutputStrategy
from harness.testing import check_defense, tiny_endpoint, tiny_oracle, tiny_victim
from harness.testing.fixtures import default_registry

COST_TOLERANCE = 0.03
"""PCE's mean cost fraction on the test split stays within this of the original's (it is
the original's on the calibration split up to whole inputs per class)."""


@pytest.fixture(scope="module")
def trained():
    """A tiny 3-exit victim trained 8 epochs on the embedded digits (about 2 s)."""
    registry = default_registry()
    data = registry.get("dataset", "digits").cls().load(None)
    return tiny_victim(data, epochs=8, width=8, registry=registry)


def probs_of(victim, split):
    return exit_probabilities(victim.model, getattr(victim.data, split).x)


def served_exits(victim, defense, x, seed=0, batch=32):
    defense.reset()
    endpoint = tiny_endpoint(victim, defense, seed=seed)
    out = [endpoint.respond(x[i:i + batch]) for i in range(0, len(x), batch)]
    return (np.concatenate([r.exits for r in out]),
            np.concatenate([r.cost_fraction for r in out]), endpoint)


def test_pce_balances_exit_rates_across_classes_at_the_victims_mean_cost(trained):
    calibration = calibrate_per_class(trained.strategy, probs_of(trained, "val"),
                                      cost_fraction=trained.model.cost_fraction)
    counters = calibration.counters
    assert counters["mean_cost_deployed"] == pytest.approx(counters["mean_cost_original"],
                                                           abs=0.01)
    assert counters["imbalance_deployed"] < 0.75 * counters["imbalance_original"]
    test = probs_of(trained, "test")
    original, pce = trained.strategy.exits(test), calibration.strategy.exits(test)
    cost = np.asarray(trained.model.cost_fraction)
    final_class = test[-1].argmax(axis=1)
    assert abs(cost[pce].mean() - cost[original].mean()) <= COST_TOLERANCE
    assert (class_exit_imbalance(pce, final_class, 3)
            < 0.75 * class_exit_imbalance(original, final_class, 3))
    assert np.mean(pce != original) > 0.1  # it really is another strategy


def test_pce_defense_serves_exactly_its_declared_strategy_and_reports_its_calibration(trained):
    defense = PerClassExiting()
    x = trained.data.test.x
    exits, charged, endpoint = served_exits(trained, defense, x)
    declared = declared_strategy(PerClassExiting(), endpoint.server)
    assert isinstance(declared, PerClassStrategy)
    np.testing.assert_array_equal(exits, declared.exits(exit_probabilities(trained.model, x)))
    # computed, and charged, exactly up to the exit that answers
    np.testing.assert_allclose(charged, np.asarray(trained.model.cost_fraction)[exits])
    report = defense.report()
    assert report["queries"] == len(x) and report["calibration_samples"] == len(
        trained.data.val)
    assert report["imbalance_deployed"] < report["imbalance_original"]
    assert "choose_exits" in defense.stages()  # the board's latency panel and exit family


def test_cgr_is_seeded_and_randomizes_at_the_rate_its_epsilon_sets(trained):
    x = np.concatenate([trained.data.test.x] * 6)
    a, charged, endpoint = served_exits(trained, ConfidenceGuidedRandomness(epsilon=1.0), x,
                                        seed=3)
    # a drawn exit is answered without computing PCE's decision: charged only that deep
    np.testing.assert_allclose(charged, np.asarray(trained.model.cost_fraction)[a])
    b, _, _ = served_exits(trained, ConfidenceGuidedRandomness(epsilon=1.0), x, seed=3)
    c, _, _ = served_exits(trained, ConfidenceGuidedRandomness(epsilon=1.0), x, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    defense = ConfidenceGuidedRandomness(epsilon=1.0)
    served_exits(trained, defense, x, seed=3)
    strategy = declared_strategy(defense, endpoint.server)
    assert isinstance(strategy, ConfidenceGuidedStrategy)
    assert strategy.mix == pytest.approx(cgr_mix(1.0, strategy.base))
    assert strategy.epsilon == pytest.approx(1.0)
    report = defense.report()
    n = report["queries"]
    randomized = 1 - report["followed_pce"] / n
    assert abs(randomized - (1 - strategy.mix)) < 4 * math.sqrt(strategy.mix * (1 - strategy.mix)
                                                                / n)
    # the exit differs from PCE's on the randomized queries whose draw missed it
    mode = strategy.exits(exit_probabilities(trained.model, x))
    expected = (1 - strategy.mix) * (1 - np.asarray(strategy.base)[mode]).mean()
    assert abs(np.mean(a != mode) - expected) < 0.03
    # the victim's exit shares, hence its mean cost, in expectation
    cost = np.asarray(trained.model.cost_fraction)
    original = trained.strategy.exits(exit_probabilities(trained.model, x))
    assert abs(cost[a].mean() - cost[original].mean()) <= COST_TOLERANCE


def test_cgr_at_epsilon_zero_reveals_nothing_and_at_fifty_is_pce(trained):
    x = trained.data.test.x
    zero, _, endpoint = served_exits(trained, ConfidenceGuidedRandomness(epsilon=0.0), x)
    assert declared_strategy(ConfidenceGuidedRandomness(epsilon=0.0), endpoint.server).mix == 0
    final_class = exit_probabilities(trained.model, x)[-1].argmax(axis=1)
    assert class_exit_imbalance(zero, final_class, 3) < 0.2  # sampling noise only
    pce, _, _ = served_exits(trained, PerClassExiting(), x)
    fifty, _, _ = served_exits(trained, ConfidenceGuidedRandomness(epsilon=50.0), x)
    np.testing.assert_array_equal(fifty, pce)


def distributions():
    """(per-exit probability tables K x (n, C), a plain max_prob strategy, min_samples)."""
    @st.composite
    def build(draw):
        k, c, n = draw(st.integers(2, 4)), draw(st.integers(2, 5)), draw(st.integers(20, 120))
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        probs = [rng.dirichlet(np.full(c, 0.3), size=n) for _ in range(k)]
        taus = tuple(float(t) for t in rng.uniform(0.3, 0.95, k - 1))
        return probs, OutputStrategy(MaxProbPolicy(), taus), draw(st.integers(1, 8))
    return build()


@settings(max_examples=40, derandomize=True, database=None, deadline=None)
@given(distributions())
def test_pce_sends_every_input_out_of_exactly_one_exit_and_round_trips(case):
    probs, strategy, min_samples = case
    calibration = calibrate_per_class(strategy, probs, min_samples=min_samples)
    pce = calibration.strategy
    exits = pce.exits(probs)
    k = len(probs)
    assert exits.dtype.kind == "i" and exits.min() >= 0 and exits.max() < k
    fired = np.stack([pce.fires_at(j, probs[j]) for j in range(k)])  # (K, n)
    assert fired[-1].all()  # the final exit always answers
    first = fired.argmax(axis=0)  # each input leaves by the first exit that fires
    np.testing.assert_array_equal(exits, first)
    pce.validate(k, probs[0].shape[1])
    again = strategy_from_json(json.loads(json.dumps(pce.to_json())), lambda _: MaxProbPolicy())
    np.testing.assert_array_equal(again.exits(probs), exits)
    # the calibration's exit shares are the original's, up to whole inputs per group
    shares = np.bincount(exits, minlength=k) / len(exits)
    slack = k * probs[0].shape[1] * (min_samples + 1) / len(exits)
    assert np.abs(shares - np.asarray(calibration.targets)).max() <= slack + 1e-9


@settings(max_examples=30, derandomize=True, database=None, deadline=None)
@given(st.lists(st.floats(0.05, 1.0), min_size=2, max_size=4), st.floats(0.0, 6.0),
       st.integers(0, 2**32 - 1))
def test_cgr_exit_distribution_is_its_randomized_response(weights, epsilon, seed):
    base = tuple(np.asarray(weights) / np.sum(weights))
    k = len(base)
    mix = cgr_mix(epsilon, base)
    assert cgr_epsilon(mix, base) == pytest.approx(epsilon, abs=1e-6)
    table = tuple((None,) * 3 for _ in range(k - 1))  # PCE never fires early: mode = last
    strategy = ConfidenceGuidedStrategy(MaxProbPolicy(), (0.5,) * (k - 1), table, mix=mix,
                                        base=base)
    n = 4000
    probs = [np.full((n, 3), 1 / 3)] * k
    drawn = strategy.draw_exits(probs, np.random.default_rng(seed))
    # P(exit = j | mode = last) = mix [j = last] + (1 - mix) base_j
    expect = (1 - mix) * np.asarray(base)
    expect[-1] += mix
    np.testing.assert_allclose(np.bincount(drawn, minlength=k) / n, expect, atol=0.035)
    # epsilon-LDP: the most and least likely chance of any exit across modes
    worst = max((mix + (1 - mix) * p) / ((1 - mix) * p) for p in base) if mix < 1 else math.inf
    assert math.log(worst) <= epsilon + 1e-6


def test_pce_and_cgr_pass_check_defense():
    check_defense(PerClassExiting, {"min_samples": 1})
    check_defense(ConfidenceGuidedRandomness, {"epsilon": 0.0, "min_samples": 20})


@pytest.mark.parametrize(("name", "params", "words"), [
    ("pce", {"min_samples": 0}, ("defense 'pce'", "min_samples", "[1, 10000]")),
    ("pce", {"min_samples": 2.5}, ("defense 'pce'", "min_samples")),
    ("cgr", {"epsilon": -1}, ("defense 'cgr'", "epsilon", "[0, 50]")),
    ("cgr", {"epsilon": "high"}, ("defense 'cgr'", "epsilon")),
])
def test_bad_parameters_name_the_defense_and_what_is_allowed(name, params, words):
    registry = default_registry()
    with pytest.raises(ConfigError) as info:
        build_component(registry.get("defense", name).cls, params).validate(registry)
    for word in words:
        assert word in str(info.value)
    key, value = next(iter(params.items()))
    spec = parse_overrides(["attacks=knockoff", f"defenses={name}",
                            f"defense.{name}.{key}={json.dumps(value)}"])
    with pytest.raises(ConfigError, match=f"defense '{name}'"):  # as `harness run` says it
        expand_grid(spec, registry, victims=("digits_cnn",))
    assert build_component(registry.get("defense", name).cls, {}).get_params() == dict(
        registry.get("defense", name).cls().get_params())


def test_a_stack_deploys_one_strategy_at_most(trained):
    registry = default_registry()
    endpoint = tiny_endpoint(trained)
    stack = DefenseStack(members=["pce", "cgr"])
    stack.bind(registry)
    with pytest.raises(ConfigError, match="'pce' and 'cgr' each deploy"):
        declared_strategy(stack, endpoint.server)
    single = DefenseStack(members=["pce", "rounding"])
    single.bind(registry)
    assert isinstance(declared_strategy(single, endpoint.server), PerClassStrategy)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_pce_of_a_forced_exit_strategy_forces_it_too(trained, k):
    """An attacker's own server profiles exit k with a forced-exit strategy; PCE fitted to
    it (the own server refits whenever its strategy changes) sends every input there."""
    forced = forced_exit(trained.strategy, k)
    pce = calibrate_per_class(forced, probs_of(trained, "val")).strategy
    assert np.all(pce.exits(probs_of(trained, "test")) == k)


@pytest.mark.parametrize("defense", [PerClassExiting(), ConfidenceGuidedRandomness(epsilon=50)])
def test_an_attackers_own_server_fits_the_defense_to_its_own_network(trained, defense):
    """``ctx.local_server`` behind pce/cgr: the defense is fitted on the owner's outputs for
    its inputs, and refitted to a forced-exit strategy, so profiling exit k reaches exit k."""
    _, ctx = tiny_oracle(trained, 50, defense=defense)
    pool = trained.data.attacker.x
    own = ctx.local_server(trained.model, trained.strategy, pool[:200])
    assert own.defended
    for k in range(3):
        response = own.query(pool[200:260], forced_exit(trained.strategy, k))
        assert np.all(response.exits == k)
    response = own.query(pool[200:260], trained.strategy)
    assert response.admitted.all() and response.exits.max() <= 2


def test_a_victim_or_attack_may_deploy_pce_or_cgr_and_it_survives_serialisation(trained):
    """The record path a victim's strategy (server worker payload) and a stolen one take."""
    from harness.cell.stolen import strategy_from_json as record_strategy

    registry = default_registry()
    pce = calibrate_per_class(trained.strategy, probs_of(trained, "val")).strategy
    cgr = ConfidenceGuidedStrategy(pce.policy, pce.thresholds, pce.class_thresholds, mix=0.3,
                                   base=(0.5, 0.25, 0.25))
    test = probs_of(trained, "test")
    for strategy in (trained.strategy, pce, cgr):
        again = record_strategy(json.loads(json.dumps(strategy.to_json())), registry, 3, 10)
        assert type(again) is type(strategy) and again.to_json() == strategy.to_json()
        np.testing.assert_array_equal(again.exits(test), strategy.exits(test))
        np.testing.assert_array_equal(again.draw_exits(test, np.random.default_rng(1)),
                                      strategy.draw_exits(test, np.random.default_rng(1)))
