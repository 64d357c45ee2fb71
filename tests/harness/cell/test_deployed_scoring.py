"""Cells score the attack against the strategy the server deploys (a defense's declared
``deployed_strategy``, here ``pce``), and the benign costs against the victim's original."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import pytest

import harness
from defenses.per_class import PerClassExiting
from harness.cell.scoring_target import declaration_check
from harness.deployed import PerClassStrategy, calibrate_per_class
from harness.model import exit_probabilities
from harness.params import Options
from harness.plugins.manager import make_plugin_manager
from harness.protocol import Attack, StolenModel
from harness.run.config import parse_overrides
from harness.run.runner import run_grid
from harness.testing import tiny_victim
from harness.testing.fixtures import default_registry


class CloneAttack(Attack):
    """A test-only cheat that cannot exist in a cell: it rebuilds the tiny victim outright
    (the public recipe, the public split) and sets its strategy to ``target`` (``pce``:
    PCE fitted on the victim's validation outputs, as the defense fits it; ``original``:
    the victim's own). Its exit agreement says what the cell scores against."""

    name = "clone_attack"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "target": [Options("pce", "original")]}

    def __init__(self, target="pce"):
        self.target = target

    def steal(self, oracle, attacker_data, ctx):
        oracle.query(attacker_data[:10])
        registry = default_registry()
        data = registry.get("dataset", "digits").cls().load(None)
        victim = tiny_victim(data, width=4, name="tiny_victim", registry=registry)
        strategy = victim.strategy
        if self.target == "pce":
            strategy = calibrate_per_class(strategy, exit_probabilities(victim.model,
                                                                        data.val.x)).strategy
        return StolenModel(victim.model, strategy)


class LyingPCE(PerClassExiting):
    """A hostile defense: serves the victim's own exits but declares PCE tilted to answer
    every input from the last exit, so that any stolen strategy would "disagree" with it."""

    name = "lying_pce"

    def deployed_strategy(self, server):
        honest = super().deployed_strategy(server)
        table = [[None] * len(row) for row in honest.class_thresholds]
        return PerClassStrategy(honest.policy, honest.thresholds, table)

    def choose_exits(self, batch):
        return batch.policy_exits_up_to()


class ClonePlugin:
    """The test's attack and its hostile defense."""

    @harness.hookimpl
    def harness_register_attacks(self, register):
        register(CloneAttack)

    @harness.hookimpl
    def harness_register_defenses(self, register):
        register(LyingPCE)


@pytest.mark.integration
def test_cells_score_the_attack_against_the_deployed_strategy(tiny_plugin, tmp_path):
    spec = parse_overrides([
        "victims=tiny_victim", "attacks=clone_attack", "defenses=none,pce",
        "sweep.attack.clone_attack.target=pce,original", "budget=40", "isolation=none",
        "replicas=0", "secret=public", "timing=analytic",
        f"out={tmp_path}", f"cache_dir={tmp_path / 'cache'}"])
    summary = run_grid(spec, make_plugin_manager(extra_plugins=(ClonePlugin(),)),
                       show_progress=False)
    assert summary.failed == 0
    cells = {}
    for path in summary.result_paths:
        result = json.loads(path.read_text())
        key = (result["components"]["defense"]["name"],
               result["components"]["attack"]["params"]["target"])
        cells[key] = result
    ea = {key: cell["metrics"]["exit_agreement"] for key, cell in cells.items()}
    # a copy of what the server deploys agrees everywhere; a copy of the strategy it no
    # longer deploys does not (scoring against the original would give the reverse)
    assert ea[("pce", "pce")] == 1.0 and ea[("none", "original")] == 1.0
    # the same substitute: scored against the original strategy it would agree as little
    # under pce as it does undefended (this untrained victim's PCE moves few exits)
    assert ea[("pce", "original")] < 1.0 and ea[("none", "pce")] < 1.0
    assert cells[("pce", "pce")]["metrics"]["fidelity"] == 1.0
    deployed = cells[("pce", "pce")]["diagnostics"]["deployed_strategy"]
    assert deployed["strategy"]["kind"] == "per_class" and deployed["served_agreement"] == 1.0
    assert deployed["agreement_with_original"] == pytest.approx(ea[("pce", "original")])
    assert "deployed_strategy" not in cells[("none", "pce")]["diagnostics"]
    assert cells[("pce", "pce")]["components"]["defense"]["stages"] == ["choose_exits"]
    # benign costs against the original strategy: the same exit mix costs about nothing
    metrics = cells[("pce", "pce")]["metrics"]
    assert abs(metrics["compute_overhead"]) < 0.1
    report = cells[("pce", "pce")]["diagnostics"]["defense_report"]
    assert report["mean_cost_deployed"] == pytest.approx(report["mean_cost_original"], abs=0.02)


@pytest.mark.integration
def test_a_declaration_the_served_exits_contradict_fails_the_cell(tiny_plugin, tmp_path):
    spec = parse_overrides([
        "victims=tiny_victim", "attacks=clone_attack", "defenses=lying_pce", "budget=40",
        "isolation=none", "replicas=0", "secret=public", "timing=analytic",
        f"out={tmp_path}", f"cache_dir={tmp_path / 'cache'}"])
    summary = run_grid(spec, make_plugin_manager(extra_plugins=(ClonePlugin(),)),
                       show_progress=False)
    assert summary.failed == 1
    (path,) = summary.result_paths
    result = json.loads(path.read_text())
    assert result["status"] == "failed"
    error = result["error"]
    assert error["component"] == "defense:lying_pce"
    assert "does not match the exits it served" in error["message"]


@pytest.mark.parametrize(("lie", "rejected"), [(0.0, False), (0.03, False), (0.15, True)])
def test_the_declaration_check_bounds_what_a_lie_can_hide(lie, rejected):
    rng = np.random.default_rng(0)
    n = 360
    original = rng.integers(0, 4, n)
    served = original.copy()  # the server serves the victim's own exits ...
    declared = original.copy()  # ... and the declaration differs on a fraction of inputs
    moved = rng.choice(n, int(lie * n), replace=False)
    declared[moved] = (declared[moved] + 1) % 4
    assert declaration_check(declared, original, served)["rejected"] is rejected


def test_noise_on_top_of_an_honest_declaration_passes():
    rng = np.random.default_rng(1)
    n = 360
    original = rng.integers(0, 4, n)
    declared = np.where(rng.random(n) < 0.2, (original + 1) % 4, original)  # PCE moves 20%
    served = np.where(rng.random(n) < 0.5, rng.integers(0, 4, n), declared)  # CGR-like draws
    served[rng.random(n) < 0.05] = -1  # refused queries are left out
    check = declaration_check(declared, original, served)
    assert not check["rejected"] and check["mean"] > 0


def test_a_declaration_with_another_policy_is_refused_before_it_is_built():
    from types import SimpleNamespace

    from harness.cell.scoring_target import deployed_view
    from harness.errors import ComponentFailure
    from harness.strategy import OutputStrategy

    built = []

    class Registry:
        def policy(self, name):
            built.append(name)
            raise AssertionError("no policy may be built")

    victim = SimpleNamespace(strategy=OutputStrategy(default_registry().policy("max_prob"),
                                                     (0.9, 0.9, 0.9)))
    declared = {"strategy": {"policy": "evil_policy", "thresholds": [0.5, 0.5, 0.5]}}
    with pytest.raises(ComponentFailure, match="keeps the victim's policy"):
        deployed_view("evil", "defense 'evil'", Registry(), victim, None, declared,
                      np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    assert built == []
