"""The exit_steal attack family: budget, repeats, outputs, reference access, params."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attacks.exit_steal import ExitStealAttack, combine_repeats
from attacks.exit_steal_variants import EXIT_STEAL_ATTACKS, ExitStealKde, ExitStealReference
from attacks.substitute import Transcript
from harness.errors import ConfigError, QueryError
from harness.stages import Defense
from harness.testing import check_attack
from tests.attacks.conftest import FAST


@pytest.fixture
def run(make_tiny_oracle, trained_tiny_victim):
    """``run(cls, budget, output="probs", truth=None, **params)`` -> (stolen, oracle)."""

    def steal(cls, budget, output="probs", truth=None, **params):
        truth = cls.reference if truth is None else truth
        oracle, ctx = make_tiny_oracle(budget, output, truth=truth)
        pool = trained_tiny_victim.data.attacker.x.copy()
        stolen = cls(**{**FAST, **params}).steal(oracle, pool, ctx)
        return stolen, oracle

    return steal


@pytest.mark.parametrize("repeats", [1, 3])
def test_never_exceeds_budget_and_estimates_every_query(run, repeats):
    stolen, oracle = run(ExitStealAttack, 61, repeats=repeats)
    assert oracle.queries_used <= 61
    assert oracle.queries_used == (61 // repeats) * repeats
    assert stolen.estimated_exits.shape == (oracle.queries_used,)
    if repeats > 1:  # every repeat of an input carries that input's estimate
        per_input = stolen.estimated_exits.reshape(-1, repeats)
        assert (per_input == per_input[:, :1]).all()
    stolen.strategy.validate(stolen.model.num_exits, 10)
    json.dumps(stolen.diagnostics)
    assert stolen.diagnostics["estimator"] == "bayes"


def test_estimates_track_true_exits_and_search_fits(run):
    stolen, oracle = run(ExitStealAttack, 200)
    truth = oracle.served_exits()
    assert np.mean(stolen.estimated_exits == truth) > 0.8
    assert 0.0 <= stolen.diagnostics["search_agreement"] <= 1.0


def test_works_with_label_outputs(run):
    stolen, oracle = run(ExitStealKde, 80, output="label")
    assert oracle.queries_used == 80
    stolen.strategy.validate(3, 10)


def test_reference_variant_reads_true_exits_and_real_attacks_do_not(run, harness_registry):
    assert ExitStealReference.reference and not any(
        c.reference for c in EXIT_STEAL_ATTACKS if c is not ExitStealReference)
    stolen, oracle = run(ExitStealReference, 60)
    assert np.array_equal(stolen.estimated_exits, oracle.served_exits())
    with pytest.raises(QueryError, match="reference"):
        run(ExitStealReference, 60, truth=False)
    for cls in EXIT_STEAL_ATTACKS:  # real attacks run without access to the truth
        if not cls.reference:
            run(cls, 40, truth=False, finetune_epochs=0, epochs=1)
    with pytest.raises(ConfigError, match="exit_steal_reference"):
        ExitStealAttack(estimator="true_exits").validate(harness_registry)
    with pytest.raises(QueryError, match="reference"):  # and it could not read them anyway
        run(ExitStealAttack, 40, estimator="true_exits")


class RefuseOdd(Defense):
    """A monitor that refuses every other query."""

    name = "refuse_odd"

    def __init__(self):
        self.count = 0

    def admit(self, batch):
        mask = (np.arange(self.count, self.count + len(batch)) % 2) == 0
        self.count += len(batch)
        return mask


def test_refused_queries_are_dropped(make_tiny_oracle, trained_tiny_victim):
    oracle, ctx = make_tiny_oracle(60, defense=RefuseOdd())
    pool = trained_tiny_victim.data.attacker.x
    stolen = ExitStealAttack(**FAST, repeats=2).steal(oracle, pool, ctx)
    assert stolen.diagnostics["admitted_inputs"] == 30
    assert stolen.estimated_exits.shape == (60,)


def test_combine_repeats_min_median_and_refusals():
    lat = np.array([3.0, 1.0, 2.0, np.nan, np.nan, np.nan, 5.0, 7.0, 6.0])
    adm = np.isfinite(lat)
    probs = np.tile(np.array([[0.2, 0.8]]), (9, 1))
    probs[~adm] = np.nan
    raw = Transcript(np.repeat(np.arange(3.0), 3), probs, lat, adm)
    rows, kept = combine_repeats(raw, np.arange(3.0), 3, "min")
    assert kept.tolist() == [True, False, True]
    assert rows.latency_s.tolist() == [1.0, 5.0]
    assert np.allclose(rows.outputs, [[0.2, 0.8], [0.2, 0.8]])
    rows, _ = combine_repeats(raw, np.arange(3.0), 3, "median")
    assert rows.latency_s.tolist() == [2.0, 6.0]


def test_params_round_trip_and_validation(harness_registry):
    for cls in EXIT_STEAL_ATTACKS:
        attack = cls(**FAST)
        params = attack.get_params()
        json.dumps(params)
        assert cls(**params).get_params() == params
        attack.validate(harness_registry)
    with pytest.raises(ConfigError, match=r"estimator='nope'.*registered exit_estimator names: bayes"):
        ExitStealAttack(estimator="nope").validate(harness_registry)
    with pytest.raises(ConfigError, match=r"repeats=0 is invalid; allowed: an integer in \[1, 1000\]"):
        ExitStealAttack(repeats=0).validate()
    with pytest.raises(ConfigError, match=r"estimator_params=\{'lag': 3\} do not fit .*'bayes'"):
        ExitStealAttack(estimator_params={"lag": 3}).validate(harness_registry)
    with pytest.raises(ConfigError, match=r"max_bins=1 is invalid"):
        ExitStealAttack(estimator_params={"max_bins": 1}).validate(harness_registry)
    with pytest.raises(ConfigError, match=r"architecture_params=\{'width': 0\}"):
        ExitStealAttack(architecture="small_cnn",
                        architecture_params={"width": 0}).validate(harness_registry)


@pytest.mark.parametrize("cls", [ExitStealAttack, ExitStealReference])
def test_conformance_kit(cls):
    check_attack(cls, params=FAST, budget=48)


def test_cost_fractions_reach_estimators_that_take_them(run):
    from attacks.exit_estimation import BayesEstimator
    from attacks.exit_steal import accepts_keyword

    stolen, _ = run(ExitStealAttack, 60)
    assert stolen.diagnostics["cost_fraction_given"] is True

    def old_style(latency_s, num_exits, rng):
        return None

    def flexible(latency_s, num_exits, rng, **kwargs):
        return None

    assert accepts_keyword(BayesEstimator().estimate, "cost_fraction")
    assert not accepts_keyword(old_style, "cost_fraction")
    assert accepts_keyword(flexible, "cost_fraction")


def test_a_policy_without_training_space_skips_the_strategy_loss_and_still_searches(
        make_tiny_oracle, trained_tiny_victim, monkeypatch):
    """Issue 23, item 5: a victim policy with no confidence_logit is still attacked."""
    from tests.attacks.test_strategy_loss import MarginPolicy

    oracle, ctx = make_tiny_oracle(120, "probs", truth=False)
    monkeypatch.setattr(type(ctx), "policy", lambda self, name: MarginPolicy())
    stolen = ExitStealAttack(**FAST).steal(oracle, trained_tiny_victim.data.attacker.x.copy(), ctx)
    assert stolen.strategy.policy.name == "margin"
    stolen.strategy.validate(stolen.model.num_exits, 10)
    assert "no training-space confidence" in stolen.diagnostics["strategy_loss_skipped"]
    assert 0.0 <= stolen.diagnostics["search_agreement"] <= 1.0
    json.dumps(stolen.diagnostics)
