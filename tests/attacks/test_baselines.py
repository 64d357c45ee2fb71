"""The function-stealing baselines: budget, outputs, determinism, refusals, the kit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attacks.activethief import ActiveThiefAttack, kcenter_greedy
from attacks.function_only import FunctionOnlyAttack
from attacks.jbda import JbdaAttack
from attacks.knockoff import KnockoffAttack
from harness.errors import BudgetExhaustedError, ConfigError
from harness.stages import Defense
from harness.testing import check_attack

TINY = {"epochs": 2, "architecture_params": {"width": 8}, "batch_size": 32}
ROUNDS = {"round_epochs": 1}
VARIANTS = [
    pytest.param(KnockoffAttack, {**ROUNDS, "rounds": 3}, id="knockoff-adaptive"),
    pytest.param(KnockoffAttack, {"sampling": "random"}, id="knockoff-random"),
    pytest.param(JbdaAttack, {**ROUNDS, "seed_size": 10, "rounds": 3}, id="jbda"),
    pytest.param(ActiveThiefAttack, {**ROUNDS, "seed_size": 20, "rounds": 2}, id="at-kcenter"),
    pytest.param(ActiveThiefAttack, {**ROUNDS, "seed_size": 20, "rounds": 2,
                                     "strategy": "uncertainty"}, id="at-uncertainty"),
    pytest.param(ActiveThiefAttack, {**ROUNDS, "seed_size": 20, "rounds": 2,
                                     "strategy": "random"}, id="at-random"),
    pytest.param(FunctionOnlyAttack, {}, id="function_only"),
]


@pytest.fixture
def run(make_tiny_oracle, trained_tiny_victim):
    """``run(cls, budget, output="probs", defense=None, **params)`` -> (stolen, oracle)."""

    def steal(cls, budget, output="probs", defense=None, **params):
        oracle, ctx = make_tiny_oracle(budget, output, defense=defense)
        pool = trained_tiny_victim.data.attacker.x.copy()
        return cls(**{**TINY, **params}).steal(oracle, pool, ctx), oracle

    return steal


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()
                      if p.dtype.is_floating_point])


@pytest.mark.parametrize("output", ["probs", "label"])
@pytest.mark.parametrize(("cls", "params"), VARIANTS)
def test_within_budget_reports_queries_and_fits_the_network(run, cls, params, output):
    stolen, oracle = run(cls, 77, output, **params)
    assert 0 < oracle.queries_used <= 77
    assert stolen.diagnostics["queries"] == oracle.queries_used
    assert stolen.diagnostics["admitted"] == oracle.queries_used
    stolen.strategy.validate(stolen.model.num_exits, 10)
    assert stolen.strategy.policy.name == "max_prob"
    assert len(set(stolen.strategy.thresholds)) == 1  # one global threshold
    final = stolen.diagnostics["final_exit_only"]
    assert final["cost_fraction"] == 1.0 and 0.0 <= final["fidelity_on_queries"] <= 1.0
    chosen = stolen.diagnostics["global_threshold"]
    assert chosen["threshold"] == stolen.strategy.thresholds[0]
    assert chosen["fidelity_on_queries"] >= final["fidelity_on_queries"] - 0.01 - 1e-12 \
        or chosen["threshold"] == 1.0
    label_only = cls in (JbdaAttack, ActiveThiefAttack)
    assert stolen.diagnostics["trained_on"] == ("label" if label_only else output)
    json.dumps(stolen.diagnostics, allow_nan=False)


@pytest.mark.parametrize(("cls", "params"), VARIANTS)
def test_deterministic_for_a_seed(run, cls, params):
    a, oa = run(cls, 60, **params)
    b, ob = run(cls, 60, **params)
    assert torch.equal(weights(a.model), weights(b.model))
    assert a.strategy.thresholds == b.strategy.thresholds
    assert np.array_equal(oa.served_exits(), ob.served_exits())
    assert a.diagnostics == b.diagnostics


@pytest.mark.parametrize("cls", [KnockoffAttack, JbdaAttack, ActiveThiefAttack,
                                 FunctionOnlyAttack])
def test_conformance_kit(cls):
    params = {**TINY, **({} if cls is FunctionOnlyAttack else ROUNDS)}
    check_attack(cls, params=params, budget=60)
    check_attack(cls, params=params, budget=60, output="label")


class RefuseOdd(Defense):
    """A monitor that refuses every other query."""

    name = "refuse_odd"

    def __init__(self):
        self.count = 0

    def admit(self, batch):
        mask = (np.arange(self.count, self.count + len(batch)) % 2) == 0
        self.count += len(batch)
        return mask


@pytest.mark.parametrize(("cls", "params"), VARIANTS)
def test_refused_queries_are_charged_but_not_trained_on(run, cls, params):
    stolen, oracle = run(cls, 60, defense=RefuseOdd(), **params)
    assert stolen.diagnostics["queries"] == oracle.queries_used
    assert stolen.diagnostics["admitted"] == oracle.queries_used - oracle.refused_count
    assert oracle.refused_count > 0
    stolen.strategy.validate(stolen.model.num_exits, 10)


def test_knockoff_refuses_certainty_on_labels_and_reports_its_rewards(run):
    with pytest.raises(ConfigError, match=r"attack 'knockoff'.*certainty.*output=probs"):
        run(KnockoffAttack, 40, "label", rewards="certainty")
    stolen, _ = run(KnockoffAttack, 40, "label", **ROUNDS)
    assert stolen.diagnostics["rewards"] == ["diversity", "loss"]
    stolen, _ = run(KnockoffAttack, 40, **ROUNDS)
    assert stolen.diagnostics["rewards"] == ["certainty", "diversity", "loss"]
    assert stolen.diagnostics["rounds_run"] == 5
    assert np.isclose(sum(stolen.diagnostics["final_policy"]), 1.0, atol=1e-5)


def test_knockoff_random_is_function_only(run):
    a, _ = run(KnockoffAttack, 50, sampling="random")
    b, _ = run(FunctionOnlyAttack, 50)
    assert torch.equal(weights(a.model), weights(b.model))


def test_jbda_doubles_truncates_and_stays_in_range(run, trained_tiny_victim):
    stolen, oracle = run(JbdaAttack, 70, **ROUNDS, seed_size=10, rounds=4)
    # 10 + 10 + 20 + 40 = 80 > 70: the last round is cut to what is left
    assert oracle.queries_used == 70 and stolen.diagnostics["truncated"]
    assert stolen.diagnostics["rounds_run"] == 3
    stolen, oracle = run(JbdaAttack, 500, **ROUNDS, seed_size=10, rounds=2)
    assert oracle.queries_used == 40 and not stolen.diagnostics["truncated"]  # 10, 10, 20
    assert stolen.diagnostics["queries"] == 40


class Spy(Defense):
    """Records every admitted batch's inputs."""

    name = "spy"

    def __init__(self):
        self.seen = []

    def admit(self, batch):
        self.seen.append(np.array(batch.inputs))
        return np.ones(len(batch), dtype=bool)


def test_jbda_augmented_queries_follow_the_step_and_clip(make_tiny_oracle, trained_tiny_victim):
    spy = Spy()
    oracle, ctx = make_tiny_oracle(40, defense=spy)
    pool = trained_tiny_victim.data.attacker.x.copy()
    JbdaAttack(**TINY, **ROUNDS, seed_size=10, rounds=1, step=0.3).steal(oracle, pool, ctx)
    seed, augmented = spy.seen
    lo, hi = ctx.input_range
    assert augmented.min() >= lo and augmented.max() <= hi
    assert (augmented == lo).any() or (augmented == hi).any()  # clipping happened
    moved = np.abs(augmented - seed)
    inside = moved[(seed > lo + 0.3 * (hi - lo)) & (seed < hi - 0.3 * (hi - lo))]
    assert len(inside) and (np.isclose(inside, 0.3 * (hi - lo), atol=1e-6) | (inside == 0)).all()
    assert (inside > 0).mean() > 0.5
    assert JbdaAttack(step=0.1, flip_every=2).step_size(2, ctx) == -0.1 * (hi - lo)
    assert JbdaAttack(step=0.1, flip_every=2).step_size(1, ctx) == 0.1 * (hi - lo)


def test_activethief_strategies_pick_differently_and_never_repeat(make_tiny_oracle,
                                                                   trained_tiny_victim):
    pool = trained_tiny_victim.data.attacker.x.copy()
    assert len(np.unique(pool.reshape(len(pool), -1), axis=0)) == len(pool)
    picks = {}
    for strategy in ("random", "uncertainty", "kcenter"):
        spy = Spy()
        oracle, ctx = make_tiny_oracle(60, defense=spy)
        ActiveThiefAttack(**TINY, **ROUNDS, seed_size=20, rounds=2,
                          strategy=strategy).steal(oracle, pool, ctx)
        assert oracle.queries_used == 60 and [len(b) for b in spy.seen] == [20, 20, 20]
        flat = np.concatenate(spy.seen).reshape(60, -1)
        assert len(np.unique(flat, axis=0)) == 60  # never the same pool input twice
        picks[strategy] = flat
    assert np.array_equal(picks["random"][:20], picks["kcenter"][:20])  # same initial set
    assert not np.array_equal(picks["random"][20:], picks["uncertainty"][20:])
    assert not np.array_equal(picks["uncertainty"][20:], picks["kcenter"][20:])


def test_kcenter_greedy_picks_far_points():
    cand = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [10.0, 0.0]])
    assert kcenter_greedy(cand, np.array([[0.0, 0.0]]), 2).tolist() == [3, 2]
    assert kcenter_greedy(cand, np.zeros((0, 2)), 4).tolist()[0] == 0
    assert sorted(kcenter_greedy(cand, np.zeros((0, 2)), 9).tolist()) == [0, 1, 2, 3]


def test_params_round_trip_and_validation(harness_registry):
    for cls in (KnockoffAttack, JbdaAttack, ActiveThiefAttack, FunctionOnlyAttack):
        attack = cls(**TINY)
        params = attack.get_params()
        json.dumps(params)
        assert cls(**params).get_params() == params
        attack.validate(harness_registry)
        assert harness_registry.get("attack", cls.name).cls is cls
    with pytest.raises(ConfigError, match=r"attack 'knockoff'.*sampling='bandit'"):
        KnockoffAttack(sampling="bandit").validate()
    with pytest.raises(ConfigError, match=r"attack 'activethief'.*strategy='dfal'"):
        ActiveThiefAttack(strategy="dfal").validate()
    with pytest.raises(ConfigError, match=r"attack 'jbda'.*step=0"):
        JbdaAttack(step=0).validate()
    with pytest.raises(ConfigError, match=r"attack 'function_only'.*max_drop=2"):
        FunctionOnlyAttack(max_drop=2).validate()
    with pytest.raises(ConfigError, match=r"architecture_params=\{'width': 0\}"):
        JbdaAttack(architecture="small_cnn",
                   architecture_params={"width": 0}).validate(harness_registry)


def test_fixed_threshold_and_holdout_reach_the_strategy(run):
    stolen, _ = run(FunctionOnlyAttack, 80, threshold=0.8)
    assert stolen.strategy.thresholds == (0.8, 0.8)
    stolen, _ = run(FunctionOnlyAttack, 80, holdout=0.25, patience=1, epochs=6)
    assert stolen.diagnostics["training"]["holdout_rows"] == 20
    assert stolen.diagnostics["global_threshold"]["rows_from"] == "holdout"
    assert stolen.diagnostics["global_threshold"]["rows"] == 20


@pytest.mark.parametrize(("cls", "params"), VARIANTS)
def test_a_spent_budget_is_a_clear_budget_error(make_tiny_oracle, trained_tiny_victim, cls,
                                                 params):
    oracle, ctx = make_tiny_oracle(10)
    pool = trained_tiny_victim.data.attacker.x.copy()
    oracle.query(pool[:10])
    with pytest.raises(BudgetExhaustedError, match=rf"attack '{cls.name}': no query budget"):
        cls(**TINY, **params).steal(oracle, pool, ctx)
