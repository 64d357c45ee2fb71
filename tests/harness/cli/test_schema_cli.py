from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from harness.cli import main
from harness.io.schema import DEFENSE_STAGES, combined_schema
from harness.stages import STAGES

ROOT = Path(__file__).resolve().parents[3]


def test_committed_schema_matches_code():
    committed = json.loads((ROOT / "leaderboard" / "schema.json").read_text())
    assert committed == combined_schema(), (
        "regenerate: python -m harness.io.schema > leaderboard/schema.json")


@pytest.mark.integration
def test_schema_accepts_a_real_result_and_rejects_each_breakage(tiny_plugin, tmp_path):
    main(["run", "victims=tiny_victim", "attacks=tiny_attack", "defenses=none",
          f"out={tmp_path}", f"cache_dir={tmp_path / 'cache'}", "isolation=none", "replicas=0",
          "--quiet"])
    good = json.loads(next(tmp_path.glob("cells/**/*.json")).read_text())
    schema = combined_schema()
    jsonschema.validate(good, schema)
    assert good["components"]["defense"]["stages"] == []  # none declares no stage
    assert DEFENSE_STAGES == STAGES
    breakages = {
        "old schema": {"schema_version": 1},
        "no protocol": {"protocol_version": None},
        "bad hash": {"config_hash": "xyz"},
        "bad status": {"status": "done"},
        "ok without the headline": {"metrics": {"fidelity": 0.5}},
        "ok with an error": {"error": {"type": "X", "message": "m", "component": None}},
        "negative wall time": {"wall_time_s": -1.0},
        "text metric": {"metrics": {**good["metrics"], "fidelity": "high"}},
        "unknown stage": {"components": {**good["components"], "defense": {
            **good["components"]["defense"], "stages": ["teleport"]}}},
    }
    for label, change in breakages.items():
        broken = {**good, **change}
        if change.get("protocol_version", 0) is None:
            del broken["protocol_version"]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
            pytest.fail(f"schema accepted a result with {label}")


def registry_stages(name: str) -> list[str]:
    from harness.plugins.registry import load_registry

    return load_registry().get("defense", name).stages()


@pytest.mark.integration
def test_cli_tiny_grid_end_to_end(tiny_plugin, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "victims=tiny_victim", "attacks=tiny_attack,boom", "defenses=none,pad_tiny",
                 "seeds=0", f"out={out}", f"cache_dir={tmp_path / 'cache'}", "replicas=0",
                 "--quiet"])
    printed = capsys.readouterr().out
    assert code == 1  # the boom cell failed; the others finished
    assert "leaderboard:" in printed and "tiny_attack" in printed
    board = json.loads((out / "leaderboard.json").read_text())
    jsonschema.validate(board, combined_schema())
    assert board["command"].startswith("harness run victims=tiny_victim attacks=tiny_attack,boom")
    assert board["cells"]["failed"] == 2 and board["cells"]["ok"] == 2
    assert {d["defense"] for d in board["defense_ranking"]} == {"none", "pad_tiny"}
    cells = sorted((out / "cells").rglob("*.json"))
    assert len(cells) == 4
    for c in cells:
        result = json.loads(c.read_text())
        jsonschema.validate(result, combined_schema())
        defense = result["components"]["defense"]
        assert defense["stages"] == registry_stages(defense["name"])
    assert main(["leaderboard", str(out)]) == 0
    assert json.loads((out / "leaderboard.json").read_text())["command"] == (
        f"harness leaderboard {out}")  # the command that rebuilt it, recorded by default


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["run", "attacks=nope", f"out={tmp_path}"]) == 2
    assert "unknown attack 'nope'; available:" in capsys.readouterr().err
    assert main(["run", "budget=0"]) == 2
    assert "budget='0' is invalid; allowed: an integer in [1, 1000000]" in (
        capsys.readouterr().err)


@pytest.mark.integration
def test_plugins_json_lists_builtins():
    res = subprocess.run([sys.executable, "-m", "harness.cli", "plugins", "--json"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    infos = {p["name"]: p for p in json.loads(res.stdout)}
    assert {"victims.plugin", "attacks.plugin", "defenses.plugin"} <= set(infos)
    assert infos["attacks.plugin"]["distribution"] == "exitsteal-harness"
    assert "harness_register_attacks" in infos["attacks.plugin"]["hooks"]


def test_list_command(capsys):
    assert main(["list", "attacks"]) == 0
    assert "knockoff" in capsys.readouterr().out
