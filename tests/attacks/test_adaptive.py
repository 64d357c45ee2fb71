"""Adaptive exit_steal settings and the named variants built on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attacks.adaptive import (
    ADAPTIVE_ATTACKS,
    ExitStealLabels,
    ExitStealNoisy,
    ExitStealPerturb,
    ExitStealRepeat,
)
from attacks.exit_steal import ExitStealAttack
from attacks.exit_steal_variants import LONG_TRAINING, ExitStealRuptures
from attacks.noisy_labels import clean_label_weights, provisional_accuracy
from attacks.repeats import admitted_copies, combine_repeats, perturbed_repeats
from attacks.strategy_loss import strategy_loss
from attacks.substitute import Transcript
from harness.errors import ConfigError
from harness.stages import Defense
from harness.testing import check_attack
from tests.attacks.conftest import FAST

NEW_DEFAULTS = {"repeat_perturb": 0.0, "exit_label_noise": 0.0, "performance": "exit_logits"}


class Recorder(Defense):
    """Keeps every input the server admitted (to see what the attack sent)."""

    name = "recorder"

    def __init__(self):
        self.seen = []

    def admit(self, batch):
        self.seen.append(np.array(batch.inputs))
        return np.ones(len(batch), dtype=bool)


class TopOnly(Defense):
    """Keeps the top-1 class and replaces the rest of each row by a flat vector."""

    name = "top_only"

    def perturb_outputs(self, batch):
        out = np.full(batch.outputs.shape, 0.5 / batch.outputs.shape[1])
        out[np.arange(len(out)), batch.outputs.argmax(axis=1)] += 0.5
        return out


def steal(make_tiny_oracle, pool, cls, budget, defense=None, **params):
    oracle, ctx = make_tiny_oracle(budget, defense=defense)
    return cls(**{**FAST, **params}).steal(oracle, pool.copy(), ctx), oracle, ctx


def same_model(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return (a.strategy.thresholds == b.strategy.thresholds
            and all(torch.equal(sa[k], sb[k]) for k in sa))


@pytest.fixture
def pool(trained_tiny_victim):
    return trained_tiny_victim.data.attacker.x


def test_params_round_trip_validate_and_keep_plain_defaults(harness_registry):
    plain = ExitStealAttack().get_params()
    assert {k: plain[k] for k in NEW_DEFAULTS} == NEW_DEFAULTS
    for cls in ADAPTIVE_ATTACKS:
        attack = cls()
        params = attack.get_params()
        json.dumps(params)
        assert cls(**params).get_params() == params
        assert set(params) == set(plain)
        assert cls.targets and cls.__doc__.splitlines()[0].startswith("Against ")
        attack.validate(harness_registry)
        assert cls(repeats=5).repeats == 5  # every default stays overridable
    assert ExitStealPerturb().repeat_perturb > 0 and ExitStealPerturb().repeats > 1
    # halving the epochs lost quality for these three (docs/design.md section 9)
    for cls in (ExitStealRepeat, ExitStealPerturb, ExitStealRuptures):
        params = cls().get_params()
        assert {k: params[k] for k in LONG_TRAINING} == LONG_TRAINING
        assert cls(**params).get_params() == params and cls(epochs=5).epochs == 5
    assert ExitStealAttack().epochs < LONG_TRAINING["epochs"]
    assert ExitStealNoisy().exit_label_noise > 0
    assert ExitStealLabels().performance == "labels"
    for bad, message in [({"repeat_perturb": -0.1}, r"repeat_perturb=-0.1 is invalid"),
                         ({"exit_label_noise": 0.5}, r"exit_label_noise=0.5 is invalid.*0.5\)"),
                         ({"performance": "nope"}, r"performance='nope' is invalid.*'labels'")]:
        with pytest.raises(ConfigError, match=message):
            ExitStealAttack(**bad).validate(harness_registry)


def test_exact_repeats_without_perturbation(make_tiny_oracle, pool):
    rec = Recorder()
    stolen, _, _ = steal(make_tiny_oracle, pool, ExitStealAttack, 30, defense=rec, repeats=3)
    sent = np.concatenate(rec.seen).reshape(10, 3, -1)
    assert (sent == sent[:, :1]).all()
    assert stolen.diagnostics["training_rows"] == 10


def test_perturbed_repeats_stay_in_range_and_charge_the_budget(make_tiny_oracle, pool):
    rec = Recorder()
    stolen, oracle, ctx = steal(make_tiny_oracle, pool, ExitStealAttack, 31, defense=rec,
                                repeats=3, repeat_perturb=0.1)
    assert oracle.queries_used == 30 and stolen.estimated_exits.shape == (30,)
    assert stolen.diagnostics["admitted_inputs"] == 10
    assert stolen.diagnostics["training_rows"] == 30  # every copy is a row of its own
    per_input = stolen.estimated_exits.reshape(10, 3)  # one estimate per input
    assert (per_input == per_input[:, :1]).all()
    lo, hi = ctx.input_range
    sent = np.concatenate(rec.seen).reshape(10, 3, -1)
    assert sent.min() >= lo and sent.max() <= hi
    firsts = sent[:, 0]
    assert all((pool.reshape(len(pool), -1) == f).all(axis=1).any() for f in firsts)
    moved = np.abs(sent[:, 1:] - sent[:, :1])
    assert (moved.max(axis=(1, 2)) > 0).all() and moved.max() <= 0.1 * (hi - lo) + 1e-6


def test_perturbed_repeats_helper_is_seeded_and_clipped():
    x = np.array([[0.0, 0.5, 1.0]] * 2, dtype=np.float32)
    a = perturbed_repeats(x, 4, 0.3, (0.0, 1.0), np.random.default_rng(0))
    b = perturbed_repeats(x, 4, 0.3, (0.0, 1.0), np.random.default_rng(0))
    assert a.dtype == x.dtype and a.shape == (8, 3) and np.array_equal(a, b)
    assert np.array_equal(a[::4], x) and a.min() >= 0.0 and a.max() <= 1.0
    assert not np.array_equal(a[1::4], x)


def test_admitted_copies_are_rows_of_their_own():
    x = np.arange(6.0)[:, None]
    lat = np.array([3.0, 1.0, 2.0, np.nan, np.nan, np.nan])
    raw = Transcript(x, np.tile([[0.5, 0.5]], (6, 1)), lat, np.isfinite(lat))
    rows, kept = combine_repeats(raw, x[::3], 3, "min")
    copies, owner = admitted_copies(raw, kept, 3)
    assert kept.tolist() == [True, False] and rows.latency_s.tolist() == [1.0]
    assert copies.x[:, 0].tolist() == [0.0, 1.0, 2.0] and owner.tolist() == [0, 0, 0]
    raw = Transcript(x, raw.outputs, lat[::-1], np.isfinite(lat[::-1]))
    rows, kept = combine_repeats(raw, x[::3], 3, "min")
    assert admitted_copies(raw, kept, 3)[1].tolist() == [0, 0, 0]


def test_label_mode_uses_only_the_returned_top1(make_tiny_oracle, pool):
    labels, _, _ = steal(make_tiny_oracle, pool, ExitStealAttack, 40, performance="labels")
    masked, _, _ = steal(make_tiny_oracle, pool, ExitStealAttack, 40, defense=TopOnly(),
                         performance="labels")
    assert same_model(labels, masked)  # nothing but the top-1 of each output mattered
    plain, _, _ = steal(make_tiny_oracle, pool, ExitStealAttack, 40)
    plain_masked, _, _ = steal(make_tiny_oracle, pool, ExitStealAttack, 40, defense=TopOnly())
    assert not same_model(plain, plain_masked)


def test_noisy_mode_acts_on_the_strategy_loss_only(make_tiny_oracle, pool):
    noisy, _, _ = steal(make_tiny_oracle, pool, ExitStealAttack, 40, exit_label_noise=0.3)
    plain, _, _ = steal(make_tiny_oracle, pool, ExitStealAttack, 40)
    assert 0 < noisy.diagnostics["clean_weight_mean"] <= 1
    assert "clean_weight_mean" not in plain.diagnostics
    assert not same_model(noisy, plain)
    no_ft = {"finetune_epochs": 0}
    noisy, _, _ = steal(make_tiny_oracle, pool, ExitStealAttack, 40, exit_label_noise=0.3, **no_ft)
    plain, _, _ = steal(make_tiny_oracle, pool, ExitStealAttack, 40, **no_ft)
    assert same_model(noisy, plain)


@given(a=st.floats(0, 1), eps=st.floats(0, 0.49), k=st.integers(2, 8))
def test_provisional_accuracy_inverts_the_observed_agreement(a, eps, k):
    observed = (1 - eps) * a + eps * (1 - a) / (k - 1)
    assert provisional_accuracy(observed, eps, k) == pytest.approx(a, abs=1e-9)


def test_clean_label_weights():
    est = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    sub = np.array([0, 1, 2, 3, 0, 1, 0, 0])  # agreement 0.75
    assert np.array_equal(clean_label_weights(sub, est, 0.0, 4), np.ones(8))
    w = clean_label_weights(sub, est, 0.2, 4)
    assert ((w > 0) & (w <= 1)).all()
    assert w[-1] == w[-2] < w[0] and len(set(w[:-2])) == 1  # disagreeing ones weigh less
    assert w[-1] < clean_label_weights(sub, est, 0.05, 4)[-1]  # more noise, less trust
    with pytest.raises(ValueError, match="shape"):
        clean_label_weights(sub[:3], est, 0.2, 4)


def test_strategy_loss_sample_weights(harness_registry):
    policy = harness_registry.policy("max_prob")
    loss = strategy_loss(policy, [0.9, 0.8])
    gen = torch.Generator().manual_seed(0)
    logits = [torch.randn(6, 4, generator=gen) for _ in range(3)]
    est = torch.tensor([0, 1, 2, 0, 1, 2])
    base = loss(logits, est)
    assert torch.allclose(loss(logits, est, None, torch.ones(6)), base)
    keep = torch.tensor([1.0, 1, 1, 1, 1, 0])
    dropped = loss([z[:5] for z in logits], est[:5])
    assert torch.allclose(loss(logits, est, None, keep), dropped)


@pytest.mark.parametrize("cls", ADAPTIVE_ATTACKS, ids=lambda c: c.name)
def test_variants_pass_the_conformance_kit(cls):
    check_attack(cls, params=FAST, budget=48)
