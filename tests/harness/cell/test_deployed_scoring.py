"""Cells score the attack against the strategy the server deploys (a defense's declared
``deployed_strategy``, here ``pce``), and the benign costs against the victim's original."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest

import harness
from harness.deployed import calibrate_per_class
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


class ClonePlugin:
    @harness.hookimpl
    def harness_register_attacks(self, register):
        register(CloneAttack)


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
