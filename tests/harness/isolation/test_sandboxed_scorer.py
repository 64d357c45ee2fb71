"""The sandboxed scorer (harness/isolation/scorer.py): a substitute built from an untrusted
plugin's architecture and exit policy is run in a confined worker, never in the evaluator,
and scores exactly what the same substitute scores when the plugin is trusted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cell.stolen import StolenModelError
from harness.cell.substitute import SubstituteOutputs, checked_outputs
from tests.harness.conftest import install_plugin
from tests.harness.plugins.test_third_party_components import MLP_PLUGIN

ROOT = Path(__file__).resolve().parents[3]
ARCH_PLUGIN = re.sub(  # the package's architecture and policy only: no victim, no estimator
    r"@harness.hookimpl\ndef harness_register_(exit_estimators|victims)\(register\):\n.*\n",
    "", MLP_PLUGIN) + """
import os as _os
if _os.environ.get("SCORER_TEST_EVALUATOR_PID") == str(_os.getpid()):
    raise SystemExit("the evaluator imported an untrusted plugin")
"""
GRID = ["victims=digits_cnn", "victim.digits_cnn.epochs=2", "attacks=exit_steal",
        "defenses=none", "budget=60", "attack.exit_steal.architecture=tiny_mlp",
        "attack.exit_steal.policy=margin", "attack.exit_steal.epochs=2",
        "attack.exit_steal.finetune_epochs=1", "replicas=0", "secret=public", "--quiet"]


def _run(site: Path, out: Path, cache: Path, trusted: str) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}",
           "HARNESS_TRUSTED_PLUGINS": trusted}
    guard = "" if trusted else "os.environ['SCORER_TEST_EVALUATOR_PID'] = str(os.getpid()); "
    code = f"import os, sys; {guard}from harness.cli import main; sys.exit(main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", code, "run", *GRID, f"out={out}",
                          f"cache_dir={cache}"], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (path,) = out.glob("cells/**/*.json")
    return json.loads(path.read_text())


@pytest.mark.integration
def test_an_untrusted_architecture_is_scored_in_the_sandbox_as_it_would_be_trusted(tmp_path):
    site = tmp_path / "site"
    install_plugin(site, "mlp-arch", "mlp_arch", ARCH_PLUGIN, "mlparch")
    sandboxed = _run(site, tmp_path / "sandboxed", tmp_path / "cache", trusted="")
    trusted = _run(site, tmp_path / "trusted", tmp_path / "cache", trusted="mlp-arch")
    assert sandboxed["status"] == "ok", sandboxed["error"]
    assert sandboxed["components"]["attack"]["name"] == "exit_steal"
    assert sandboxed["diagnostics"]["stolen_strategy"]["policy"] == "margin"
    assert sandboxed["metrics"] == trusted["metrics"]  # same substitute, same numbers
    for key in ("stolen_strategy", "substitute_exit_histogram", "exit_confusion"):
        assert sandboxed["diagnostics"][key] == trusted["diagnostics"][key]


def _outputs(**change) -> SubstituteOutputs:
    fields = {"exits": np.array([0, 1, 2]), "labels": np.array([3, 4, 9]),
              "final_labels": np.array([3, 4, 9]), "cost_fraction": (0.2, 0.6, 1.0),
              "strategy": {"policy": "margin", "thresholds": [0.1, 0.2, 1.0]}}
    return SubstituteOutputs(**{**fields, **change})


@pytest.mark.parametrize(("change", "message"), [
    ({"exits": np.array([0, 1, 3])}, "exits outside 0..2"),
    ({"labels": np.array([0, 1, 10])}, "labels outside 0..9"),
    ({"final_labels": np.array([0, 1])}, "final_labels of shape"),
    ({"exits": np.array([0.0, 1.0, 2.0])}, "expected 3 integers"),
    ({"labels": None}, "expected 3 integers"),
    ({"cost_fraction": (0.2, 1.0)}, "increasing fractions"),
    ({"cost_fraction": (0.6, 0.2, 1.0)}, "increasing fractions"),
    ({"cost_fraction": (0.0, 0.5, 1.0)}, "increasing fractions"),
    ({"strategy": {"policy": "max_prob", "thresholds": [0.1, 0.2, 1.0]}}, "another strategy"),
])
def test_what_the_scorer_returns_is_checked_before_scoring(change, message):
    strategy = {"policy": "margin", "thresholds": [0.1, 0.2, 1.0]}
    fine = _outputs()
    assert checked_outputs(fine, 3, 3, 10, strategy) is fine
    with pytest.raises(StolenModelError, match=message):
        checked_outputs(_outputs(**change), 3, 3, 10, strategy)
