"""Never worse than not trying (attacks/reliability.py): exit_steal says when its exit
estimate cannot be trusted and falls back to the baselines' global-threshold rule."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from attacks.exit_steal import ExitStealAttack
from attacks.reliability import MIN_INPUTS, unreliable_reasons
from tests.attacks.conftest import FAST

LATENCIES = st.lists(st.one_of(st.floats(1e-4, 1e-1), st.just(float("nan"))), max_size=60)


@settings(max_examples=100, deadline=None)
@given(lat=LATENCIES, k=st.one_of(st.none(), st.integers(1, 4)), data=st.data())
def test_every_channel_gets_a_clear_answer(lat, k, data):
    lat = np.asarray(lat, dtype=np.float64)
    est = np.asarray(data.draw(st.lists(st.integers(0, 3), min_size=len(lat),
                                        max_size=len(lat))), dtype=np.int64)
    reasons = unreliable_reasons(lat, est, k)
    assert all(isinstance(r, str) and r for r in reasons)
    admitted = np.isfinite(lat)
    if admitted.sum() < MIN_INPUTS:
        assert any("admitted queries" in r for r in reasons)
    if admitted.any() and len(np.unique(lat[admitted])) == 1:
        assert any("same value" in r for r in reasons)


def test_separable_varied_latencies_with_several_estimated_exits_are_trusted():
    rng = np.random.default_rng(0)
    exits = rng.integers(0, 3, 200)
    lat = 1e-3 * (1 + exits) * np.exp(rng.normal(0, 0.05, 200))
    assert unreliable_reasons(lat, exits, 3) == []
    assert unreliable_reasons(lat, exits, None) == []
    assert "every query on exit 0" in unreliable_reasons(lat, np.zeros(200, int), 3)[0]
    assert "failed" in unreliable_reasons(lat, None, 3, failure="ValueError: boom")[0]
    buckets = np.array([1e-3, 2e-3, 3e-3])[exits]  # padded to as many levels as exits
    assert unreliable_reasons(buckets, exits, 3) == []  # still separates them: read it
    assert "2 values for 3 exits" in unreliable_reasons(np.minimum(buckets, 2e-3), exits, 3)[0]


def test_a_constant_padded_channel_falls_back_to_the_global_threshold(make_tiny_oracle,
                                                                       trained_tiny_victim,
                                                                       monkeypatch):
    oracle, ctx = make_tiny_oracle(120, "probs")
    query = oracle.query  # every answer padded to 50 ms, as pad_constant does
    monkeypatch.setattr(oracle, "query", lambda x: dataclasses.replace(
        r := query(x), latency_s=np.where(np.isfinite(r.latency_s), 0.05, np.nan)))
    stolen = ExitStealAttack(**FAST).steal(oracle, trained_tiny_victim.data.attacker.x.copy(),
                                           ctx)
    d = stolen.diagnostics
    assert d["fallback"] == "global_threshold"
    assert any("same value" in r for r in d["estimate_unreliable"])
    thresholds = stolen.strategy.thresholds
    assert len(set(thresholds)) == 1  # one global threshold
    assert stolen.estimated_exits.shape == (oracle.queries_used,)
    stolen.strategy.validate(stolen.model.num_exits, 10)
    json.dumps(d)


def test_an_estimator_that_fails_is_a_fallback_not_a_crash(make_tiny_oracle,
                                                          trained_tiny_victim, monkeypatch):
    def broken(self, *args, **kwargs):
        raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(ExitStealAttack, "_estimate", broken)
    oracle, ctx = make_tiny_oracle(80, "probs")
    stolen = ExitStealAttack(**FAST).steal(oracle, trained_tiny_victim.data.attacker.x.copy(),
                                           ctx)
    assert "LinAlgError: singular matrix" in stolen.diagnostics["estimate_unreliable"][0]
    assert stolen.diagnostics["fallback"] == "global_threshold"
