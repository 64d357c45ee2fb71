"""The stress-test digits victims: random exit mixes (``draw``) and a weak exit 0."""

from __future__ import annotations

import json

import numpy as np
import pytest
from torch import nn

from harness.cli import main
from harness.nn.training import predict_exit_probs
from harness.plugins.manager import make_plugin_manager
from harness.plugins.registry import load_registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import VictimContext
from harness.run.config import parse_overrides
from harness.run.grid import available_victims, expand_grid
from harness.run.runner import run_grid
from harness.strategy import OutputStrategy
from harness.testing import check_component, check_victim
from victims import cache, zoo
from victims.datasets import DigitsDataset
from victims.thresholds import exit_report
from victims.zoo import DigitsCNN
from victims.zoo_stress import (
    MIN_SHARE,
    DigitsCNNRandom,
    DigitsCNNWeakEarly,
    draw_target_shares,
    thresholds_for_shares,
)

TINY = {"width": 8, "epochs": 4, "batch_size": 128}
REGISTRY = load_registry(load_entrypoints=False)


def ctx_for(cache_dir) -> VictimContext:
    return VictimContext(cache_dir, "cpu", Toolbox(REGISTRY))


@pytest.fixture(scope="module")
def digits():
    return DigitsDataset().load(None)


@pytest.fixture(scope="module")
def random_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("random-victim-cache")


@pytest.mark.parametrize("cls", [DigitsCNNRandom, DigitsCNNWeakEarly])
def test_stress_victims_declare_their_constraints(cls):
    check_component(cls)
    assert cls.dataset == "digits" and cls.family == "small_cnn"


def test_stress_victims_are_listed_and_join_victims_all(capsys):
    assert main(["list", "victims"]) == 0
    listed = capsys.readouterr().out
    assert "digits_cnn_random" in listed and "digits_cnn_weak_early" in listed
    names, _ = available_victims(parse_overrides(["victims=all"]), REGISTRY)
    assert {"digits_cnn", "digits_cnn_random", "digits_cnn_weak_early"} <= set(names)
    cells = expand_grid(parse_overrides(["victims=all", "attacks=knockoff", "defenses=none"]),
                        REGISTRY, victims=names)
    assert {c.victim.name for c in cells} == set(names)


def test_target_shares_are_seeded_floored_and_normalised():
    assert draw_target_shares(3, 4) == draw_target_shares(3, 4)
    assert draw_target_shares(3, 4) != draw_target_shares(4, 4)
    for draw in range(50):
        shares = np.array(draw_target_shares(draw, 5))
        assert shares.sum() == pytest.approx(1.0)
        assert shares.min() >= MIN_SHARE / (1 + 5 * MIN_SHARE)


def test_thresholds_meet_the_shares_on_the_set_they_come_from():
    policy = REGISTRY.policy("max_prob")
    rng = np.random.default_rng(0)
    probs = [rng.dirichlet(np.full(10, 0.3), size=400) for _ in range(4)]
    shares = (0.02, 0.6, 0.3, 0.08)
    thresholds = thresholds_for_shares(probs, policy, shares)
    strategy = OutputStrategy(policy, thresholds)
    strategy.validate(4, 10)
    mix = np.bincount(strategy.exits(probs), minlength=4) / 400
    np.testing.assert_allclose(mix, shares, atol=1 / 400 + 1e-9)


def test_random_victim_shares_digits_cnn_weights(digits, random_cache, monkeypatch):
    plain = DigitsCNN(**TINY).prepare(digits, ctx_for(random_cache))

    def no_training(*args, **kwargs):
        raise AssertionError("digits_cnn_random should load digits_cnn's cached weights")

    monkeypatch.setattr(zoo, "train_multi_exit", no_training)
    drawn = DigitsCNNRandom(**TINY, draw=7).prepare(digits, ctx_for(random_cache))
    assert drawn.weights_hash == plain.weights_hash
    assert drawn.details == {"draw": 7, "target_shares": list(draw_target_shares(7, 4))}
    assert drawn.name == "digits_cnn_random"


def test_random_draws_range_from_balanced_to_lopsided(digits, random_cache):
    test_mixes, probs = [], None
    for draw in range(20):
        victim = DigitsCNNRandom(**TINY, draw=draw).prepare(digits, ctx_for(random_cache))
        victim.strategy.validate(4, digits.num_classes)
        if probs is None:  # every draw has the same (cached) weights
            probs = {split: predict_exit_probs(victim.model, getattr(digits, split).x)
                     for split in ("val", "test")}
        val = exit_report(victim.strategy, probs["val"], digits.val.y)
        np.testing.assert_allclose(val.shares, victim.details["target_shares"], atol=0.03)
        test_mixes.append(exit_report(victim.strategy, probs["test"], digits.test.y).shares)
    mixes = np.array(test_mixes)
    assert (mixes.max(axis=1) > 0.70).any(), mixes
    assert (mixes.min(axis=1) < 0.03).any(), mixes
    assert (mixes.max(axis=1) < 0.60).any(), mixes  # and some are fairly balanced


@pytest.mark.integration
def test_random_victim_records_its_shares_in_the_cell(tmp_path):
    spec = parse_overrides([
        "victims=digits_cnn_random", "attacks=knockoff", "defenses=none", "budget=60",
        "attack.knockoff.epochs=1", "victim.digits_cnn_random.draw=5",
        *(f"victim.digits_cnn_random.{k}={v}" for k, v in TINY.items()),
        f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}", "isolation=none",
        "replicas=0"])
    (path,) = run_grid(spec, make_plugin_manager(), show_progress=False).result_paths
    result = json.loads(path.read_text())
    assert result["status"] == "ok", result["error"]
    assert result["diagnostics"]["victim_details"] == {
        "draw": 5, "target_shares": list(draw_target_shares(5, 4))}


def test_weak_early_victim_structure_and_cache_key(digits, tmp_path):
    trained = check_victim(DigitsCNNWeakEarly, {**TINY, "epochs": 1}, cache_dir=tmp_path)
    for head in trained.model.heads:
        pools = [m for m in head.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
        assert [p.output_size for p in pools] == [1]
    weak, plain = DigitsCNNWeakEarly(**TINY), DigitsCNN(**TINY)
    assert (cache.config_key(weak.weights_config(digits, "cpu"), zoo.CODE_VERSION)
            != cache.config_key(plain.weights_config(digits, "cpu"), zoo.CODE_VERSION))


@pytest.mark.integration
def test_weak_early_victim_has_a_clearly_weaker_first_exit(digits, tmp_path):
    trained = DigitsCNNWeakEarly().prepare(digits, ctx_for(tmp_path))  # the default recipe
    report = exit_report(trained.strategy, predict_exit_probs(trained.model, digits.test.x),
                         digits.test.y)
    print(f"\ndigits_cnn_weak_early test: {report.summary()}")
    assert report.head_accuracy[0] < 0.90
    assert report.head_accuracy[-1] >= 0.95
    assert report.accuracy >= 0.95  # the selection keeps the weak exit to its sure inputs


@pytest.mark.slow
def test_default_random_victim_test_mixes_over_draws(digits, tmp_path):
    mixes = []
    for draw in range(10):
        victim = DigitsCNNRandom(draw=draw).prepare(digits, ctx_for(tmp_path))
        probs = predict_exit_probs(victim.model, digits.test.x)
        mixes.append(exit_report(victim.strategy, probs, digits.test.y).shares)
        print(f"draw {draw}: target {np.round(victim.details['target_shares'], 3)} "
              f"test {np.round(mixes[-1], 3)}")
    mixes = np.array(mixes)
    assert mixes.max() > 0.85 and (mixes.max(axis=1) < 0.5).any()
    assert ((mixes > 0) & (mixes < 0.03)).any()
