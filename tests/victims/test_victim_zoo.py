"""The built-in digits victims: parameters, overrides, caching, exit distribution."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from harness.components import build_component
from harness.errors import ConfigError
from harness.nn.training import predict_exit_probs
from harness.plugins.registry import load_registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import Victim, VictimContext
from victims import cache, zoo
from victims.datasets import DigitsDataset
from victims.thresholds import exit_report
from victims.zoo import BUILTIN_VICTIMS, DigitsCNN, DigitsCNNEntropy

TINY = {"num_exits": 3, "width": 4, "epochs": 1, "batch_size": 128}
REGISTRY = load_registry(load_entrypoints=False)


def ctx_for(cache_dir) -> VictimContext:
    return VictimContext(cache_dir, "cpu", Toolbox(REGISTRY))


@pytest.fixture(scope="module")
def digits():
    return DigitsDataset().load(None)


def test_builtin_victims_are_sklearn_style():
    assert {cls.name for cls in BUILTIN_VICTIMS} == {"digits_cnn", "digits_cnn_entropy"}
    for cls in BUILTIN_VICTIMS:
        assert issubclass(cls, Victim) and cls.dataset == "digits"
        victim = build_component(cls, {"width": 8, "thresholds": [0.5, 0.6, 0.7]})
        params = victim.get_params()
        assert params["width"] == 8 and params["thresholds"] == [0.5, 0.6, 0.7]
        assert type(victim)(**params).get_params() == params
        assert cls().get_params() == cls.default_params()


@pytest.mark.parametrize("thresholds, match", [
    ([0.9], "exactly 2"),
    ([0.9, 1.5], "outside"),
    ([0.9, float("nan")], "finite"),
    (["high", 0.9], r"thresholds=\['high', 0.9\] is invalid; allowed: a list"),
    ("0.9,0.9", "thresholds='0.9,0.9' is invalid"),
])
def test_threshold_override_is_validated(digits, tmp_path, thresholds, match):
    victim = DigitsCNN(**TINY, thresholds=thresholds)
    with pytest.raises(ConfigError, match=match) as info:
        victim.prepare(digits, ctx_for(tmp_path))
    assert "digits_cnn" in str(info.value)
    assert not any(tmp_path.iterdir())  # failed before any training


@pytest.mark.parametrize("params, match", [
    ({"num_exits": 1}, "num_exits"), ({"width": 2.5}, "width"), ({"lr": 0}, "lr"),
    ({"policy": "nope"}, "max_prob"), ({"max_exit_share": 2}, "max_exit_share"),
    ({"train_seed": True}, "train_seed"),
])
def test_bad_params_raise_config_error(digits, tmp_path, params, match):
    with pytest.raises(ConfigError, match=match):
        DigitsCNNEntropy(**(TINY | params)).prepare(digits, ctx_for(tmp_path))


def test_prepare_trains_caches_and_reloads(digits, tmp_path, monkeypatch):
    first = DigitsCNN(**TINY).prepare(digits, ctx_for(tmp_path))
    assert first.name == "digits_cnn" and first.family == "small_cnn"
    assert not first.model.training and first.model.num_exits == 3
    assert first.strategy.policy.name == "max_prob"
    first.strategy.validate(3, 10)
    assert first.data is digits

    def no_training(*args, **kwargs):
        raise AssertionError("should have loaded from the cache")

    monkeypatch.setattr(zoo, "train_multi_exit", no_training)
    second = DigitsCNNEntropy(**TINY).prepare(digits, ctx_for(tmp_path))  # shares weights
    assert second.weights_hash == first.weights_hash
    assert second.strategy.policy.name == "entropy"


def test_corrupt_cache_entry_is_detected_and_retrained(digits, tmp_path, caplog):
    victim = DigitsCNN(**TINY)
    first = victim.prepare(digits, ctx_for(tmp_path))
    key = cache.config_key(victim.weights_config(digits, "cpu"), zoo.CODE_VERSION)
    path = cache.entry_path(tmp_path, key)
    path.write_bytes(path.read_bytes()[:-200])
    with caplog.at_level(logging.WARNING, logger="victims.zoo"):
        again = victim.prepare(digits, ctx_for(tmp_path))
    assert "retraining" in caplog.text
    assert again.weights_hash == first.weights_hash  # deterministic retraining
    assert cache.load_weights(tmp_path, key) is not None  # entry repaired


def test_override_strategy_is_used_as_given(digits, tmp_path):
    victim = DigitsCNN(**TINY, thresholds=[0.0, 1.0], policy="max_prob")
    trained = victim.prepare(digits, ctx_for(tmp_path))
    assert trained.strategy.thresholds == (0.0, 1.0)
    probs = predict_exit_probs(trained.model, digits.test.x)
    assert np.all(trained.strategy.exits(probs) == 0)


@pytest.mark.integration
def test_default_victims_have_non_degenerate_exits(digits, tmp_path):
    for cls in (DigitsCNN, DigitsCNNEntropy):
        trained = cls().prepare(digits, ctx_for(tmp_path))
        report = exit_report(trained.strategy, predict_exit_probs(trained.model, digits.test.x),
                             digits.test.y)
        print(f"\n{cls.name} test: {report.summary()}")
        assert report.head_accuracy[-1] >= 0.95
        assert min(report.shares) >= 0.05 and max(report.shares) <= 0.60
