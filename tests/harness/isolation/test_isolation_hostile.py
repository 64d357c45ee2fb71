"""A hostile plugin package, installed through its entry point, against the isolated harness.

Every exploit found against the in-process harness either finds nothing to reach or
ends as its cell's failure naming the plugin; no other cell, result or cache entry
changes. The checks are structural (what a gc scan in the client or server process
finds), not checks on attribute names.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cell.server import prepare_registered_victim
from harness.cell.spec import CellEnvironment
from harness.metrics import scoring
from harness.plugins.manager import make_plugin_manager
from harness.plugins.registry import load_registry
from harness.run.config import parse_overrides
from harness.run.runner import run_grid
from tests.harness.conftest import install_plugin

pytestmark = pytest.mark.integration  # runs cells, workers or subprocesses

HOSTILE = (Path(__file__).parent / "hostile_plugin.txt").read_text()
VICTIM = ["victims=digits_cnn", "victim.digits_cnn.epochs=1", "victim.digits_cnn.width=8",
          "budget=60"]
KNOCKOFF = ["attack.knockoff.epochs=2"]


@pytest.fixture
def hostile(plugin_dir):
    install_plugin(plugin_dir, "hostile-plugins", "hostile_plugins", HOSTILE, "hostile")
    yield plugin_dir


def _run(tmp_path, out, *keys):
    spec = parse_overrides([*VICTIM, f"out={tmp_path / out}", f"cache_dir={tmp_path / 'cache'}",
                            "replicas=0", *keys])
    summary = run_grid(spec, make_plugin_manager(), show_progress=False)
    results = {}
    for path in summary.result_paths:
        r = json.loads(path.read_text())
        results[r["components"]["attack"]["name"]] = r
    return summary, results


def _confined(result) -> bool:
    """Did the kernel confine every worker of this cell (no mechanism missing)?"""
    return result["diagnostics"]["isolation"].get("level") == "kernel"


def _digest(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _secrets(tmp_path) -> set[str]:
    """Digests of the victim's weights (and their rows) and of the test split."""
    registry = load_registry()
    victim = prepare_registered_victim(registry, "digits_cnn", {"epochs": 1, "width": 8},
                                       CellEnvironment(tmp_path / "cache", None), "cpu")
    out = {_digest(victim.data.test.x), _digest(victim.data.test.y)}
    for tensor in victim.model.state_dict().values():
        array = tensor.numpy()
        if array.size >= 16:
            out.add(_digest(array))
            if array.ndim >= 2:
                out.update(_digest(row) for row in array)
    return out


def test_an_attack_reaches_nothing_of_the_victim_the_truth_or_more_budget(hostile, tmp_path):
    _, results = _run(tmp_path, "out", "defenses=none", "attacks=snoop",
                      "secret=public")  # the digests below are of the public victim
    r = results["snoop"]
    assert r["status"] == "ok", r["error"]
    found = r["diagnostics"]["attack"]["found"]
    assert found["truth"] == "QueryError"
    assert not found["endpoint_reachable"]
    assert found["answered"] <= 60 and r["metrics"]["queries_used"] <= 60
    assert found["over_budget"] == "BudgetExhaustedError"
    assert not {"victim", "server", "served", "theft", "cell", "env", "test"} & set(
        found["frame_names"])
    assert found["array_digests"], "the scan must see the attacker's own arrays"
    assert not _secrets(tmp_path) & set(found["array_digests"])


def test_monkeypatching_the_scoring_does_not_change_other_cells(hostile, tmp_path,
                                                                monkeypatch):
    """The plugin patches the scoring at import time and again in ``steal``: the evaluator
    never imports it (a confined plugin host does), so neither reaches the scores."""
    _, mixed = _run(tmp_path, "mixed", "defenses=none", "attacks=patcher,knockoff", *KNOCKOFF,
                    "secret=public")
    assert "hostile_plugins" not in sys.modules
    assert scoring.strategy_scores.__module__ == "harness.metrics.scoring"
    monkeypatch.setenv("HARNESS_DISABLE_PLUGINS", "hostile")
    _, clean = _run(tmp_path, "clean", "defenses=none", "attacks=knockoff", *KNOCKOFF,
                    "secret=public")
    assert mixed["patcher"]["status"] == "ok"
    assert mixed["patcher"]["metrics"]["exit_agreement"] != 0.999
    assert mixed["knockoff"]["metrics"] == clean["knockoff"]["metrics"]


def test_rewriting_results_or_poisoning_the_cache_fails_that_cell_and_is_undone(hostile, tmp_path):
    _, first = _run(tmp_path, "out", "defenses=none", "attacks=knockoff", *KNOCKOFF,
                    "replicas=1", "secret=public")
    path = next((tmp_path / "out" / "cells").rglob("*knockoff*/*.json"), None) or next(
        p for p in (tmp_path / "out" / "cells").rglob("*.json") if "knockoff" in str(p))
    before = path.read_bytes()
    (replica_file,) = (tmp_path / "out" / "replicas").glob("*.json")  # the replica agreement too
    replica_before = replica_file.read_bytes()
    _, second = _run(tmp_path, "out", "defenses=none", "attacks=vandal",
                     f"attack.vandal.out={tmp_path / 'out'}",
                     f"attack.vandal.cache={tmp_path / 'cache'}", "secret=public")
    vandal = second["vandal"]
    if _confined(vandal):  # prevented: nothing could be written, the cell is the attack's
        assert vandal["status"] == "ok", vandal["error"]
        assert vandal["diagnostics"]["attack"]["vandalised"] == {"results": 0, "cache": 0,
                                                                  "seen": 0}
    else:  # detected: the tripwire restores what changed and fails the cell
        assert vandal["status"] == "failed"
        assert "attack:vandal" in vandal["error"]["component"]
        assert "restored" in vandal["error"]["message"]
    assert path.read_bytes() == before
    assert replica_file.read_bytes() == replica_before
    _, fresh = _run(tmp_path, "fresh", "defenses=none", "attacks=knockoff", *KNOCKOFF,
                    "secret=public")
    assert fresh["knockoff"]["status"] == "ok"
    assert fresh["knockoff"]["metrics"] == first["knockoff"]["metrics"]
    assert (fresh["knockoff"]["diagnostics"]["victim_weights_hash"]
            == first["knockoff"]["diagnostics"]["victim_weights_hash"])


def test_a_defense_finds_neither_the_attack_nor_the_test_labels(hostile, tmp_path):
    registry = load_registry()
    victim = prepare_registered_victim(registry, "digits_cnn", {"epochs": 1, "width": 8},
                                       CellEnvironment(tmp_path / "cache", None), "cpu")
    labels = _digest(victim.data.test.y)
    _, results = _run(tmp_path, "out", "defenses=spy", "attacks=knockoff", *KNOCKOFF,
                      f"defense.spy.target={labels}", "secret=public")
    assert results["knockoff"]["status"] == "ok", results["knockoff"]["error"]
    found = results["knockoff"]["diagnostics"]["defense_report"]
    assert found["scans"] >= 1
    assert found["attack_specs"] == found["frames"] == found["labels"] == 0


def test_each_results_folder_has_its_own_secret_by_default(hostile, tmp_path):
    """The victim a plugin can rebuild from the public recipe and seed (public mode) is not
    the one a default run serves; each folder's secret is its own, private and kept."""
    _, public = _run(tmp_path, "public", "defenses=none", "attacks=snoop", "secret=public")
    _, first = _run(tmp_path, "first", "defenses=none", "attacks=snoop")
    _, second = _run(tmp_path, "second", "defenses=none", "attacks=snoop")
    secret_file = tmp_path / "first" / ".harness-secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "public" / ".harness-secret").exists()
    weights = {name: r["snoop"]["diagnostics"]["victim_weights_hash"]
               for name, r in (("public", public), ("first", first), ("second", second))}
    assert len(set(weights.values())) == 3  # the public rebuild matches neither folder
    assert first["snoop"]["diagnostics"]["isolation"]["secret"] == "folder"
    assert public["snoop"]["diagnostics"]["isolation"]["secret"] == "public"
    found = first["snoop"]["diagnostics"]["attack"]["found"]
    assert found["secret"] is None and not found["secret_in_proc"]
    before = secret_file.read_text()
    summary, _ = _run(tmp_path, "first", "defenses=none", "attacks=snoop")
    assert secret_file.read_text() == before and summary.reused == 1  # same folder, same secret


def test_the_secret_salts_the_victim_and_never_reaches_a_worker(hostile, tmp_path, monkeypatch):
    _, public = _run(tmp_path, "public", "defenses=none", "attacks=snoop", "secret=public")
    monkeypatch.setenv("HARNESS_SECRET", "correct horse battery staple")
    _, secret = _run(tmp_path, "secret", "defenses=none", "attacks=snoop")
    a, b = public["snoop"], secret["snoop"]
    assert a["status"] == b["status"] == "ok"
    assert a["diagnostics"]["isolation"]["secret"] == "public"
    assert b["diagnostics"]["isolation"]["secret"] == "secret"
    assert a["config_hash"] != b["config_hash"]
    assert (a["diagnostics"]["victim_weights_hash"] != b["diagnostics"]["victim_weights_hash"])
    found = b["diagnostics"]["attack"]["found"]
    assert found["secret"] is None and not found["secret_in_proc"]


def test_a_defense_that_sniffs_the_traffic_shape_pays_in_the_benign_costs(hostile, tmp_path):
    """The mirror client sends the attacker's batch sizes and volume: refusing clients by
    shape refuses it too, so the sniffer is never free protection."""
    _, results = _run(tmp_path, "out", "defenses=sniffer", "attacks=knockoff", *KNOCKOFF,
                      "budget=400")
    sniffer = results["knockoff"]
    assert sniffer["status"] == "ok", sniffer["error"]
    metrics = sniffer["metrics"]
    assert metrics["fidelity"] < 0.5  # the attacker was refused
    # the mirror sent ~400 of the ~760 benign queries, in the attacker's batch sizes
    assert metrics["benign_refusal_rate"] >= 0.3
    assert metrics["benign_accuracy_drop"] > 0  # refused benign queries count as wrong
