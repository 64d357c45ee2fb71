"""The threat model as grid keys: ``threat.num_exits`` and ``threat.architecture``.

Parsed and checked before any work, carried on every cell (its config hash and result
JSON), applied to the :class:`AttackContext` a cell hands its attack, honoured by the
built-in attacks, and kept apart in the leaderboard.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from harness.board.leaderboard import aggregate
from harness.board.tables import format_table
from harness.cell.spec import ThreatModel
from harness.cli import main
from harness.errors import ConfigError, HarnessError
from harness.plugins.manager import make_plugin_manager
from harness.plugins.registry import load_registry
from harness.run.config import parse_overrides
from harness.run.grid import config_hash, expand_grid
from harness.run.runner import run_grid
from harness.testing import tiny_oracle
from tests.harness.conftest import install_plugin

HIDDEN = ["threat.num_exits=hidden", "threat.architecture=hidden"]

PROBE_PLUGIN = textwrap.dedent('''
    """An attack that records what its context reveals (num_exits, family, costs)."""
    import harness
    from harness.errors import HarnessError
    from harness.protocol import Attack, StolenModel
    from harness.strategy import OutputStrategy


    class ContextProbe(Attack):
        name = "ctx_probe"

        def __init__(self):
            pass

        def steal(self, oracle, attacker_data, ctx):
            oracle.query(attacker_data[:4])
            try:
                ctx.new_network(3, ctx.seed)
                refused = None
            except HarnessError as exc:
                refused = str(exc)
            model = ctx.new_network(3, ctx.seed, "small_cnn", width=4)
            seen = {"num_exits": ctx.num_exits, "victim_family": ctx.victim_family,
                    "cost_fraction": None if ctx.cost_fraction is None
                    else list(ctx.cost_fraction), "new_network_refused": refused}
            return StolenModel(model, OutputStrategy(ctx.policy("max_prob"), (0.5, 0.5)),
                               diagnostics=seen)


    @harness.hookimpl
    def harness_register_attacks(register):
        register(ContextProbe)
''')


@pytest.fixture
def probe_plugin(tiny_plugin, plugin_dir):
    install_plugin(plugin_dir, "ctx-probe-plugin", "ctx_probe_plugin", PROBE_PLUGIN, "ctx_probe")
    yield "ctx_probe"
    sys.modules.pop("ctx_probe_plugin", None)


def _spec(tmp_path: Path, *extra: str):
    return parse_overrides(["victims=tiny_victim", "defenses=none", f"out={tmp_path / 'out'}",
                            f"cache_dir={tmp_path / 'cache'}", "replicas=0", *extra])


def _results(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


# -- parsing ---------------------------------------------------------------------------


def test_defaults_grant_both_and_keys_parse(tmp_path):
    assert parse_overrides([]).settings.threat == ThreatModel("granted", "granted")
    spec = parse_overrides(HIDDEN)
    assert spec.settings.threat == ThreatModel(num_exits="hidden", architecture="hidden")
    cfg = tmp_path / "grid.toml"
    cfg.write_text('[threat]\nnum_exits = "hidden"\n')
    from_file = parse_overrides([], cfg)
    assert from_file.settings.threat == ThreatModel(num_exits="hidden", architecture="granted")
    overridden = parse_overrides(["threat.num_exits=granted", "threat.architecture=hidden"], cfg)
    assert overridden.settings.threat == ThreatModel(num_exits="granted", architecture="hidden")


@pytest.mark.parametrize(("override", "message"), [
    ("threat.num_exits=secret", "threat.num_exits='secret' is invalid; allowed: one of "
                                "'granted', 'hidden'"),
    ("threat.architecture=", "threat.architecture='' is invalid; allowed: one of 'granted'"),
    ("threat.arch=hidden", "unknown key 'threat.arch'; valid keys: "),
    ("threat.defense=granted", "threat.defense='granted' is invalid; allowed: one of 'known', "
                               "'hidden'"),
])
def test_bad_threat_values_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_overrides([override])


@pytest.mark.integration
def test_bad_threat_value_stops_the_cli_before_any_work(capsys, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    code = main(["run", f"out={out}", f"cache_dir={cache}", "attacks=knockoff",
                 "threat.architecture=partial"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert ("threat.architecture='partial' is invalid; allowed: one of 'granted', 'hidden'"
            in lines[0])
    assert not out.exists() and not cache.exists()
    toml = tmp_path / "grid.toml"
    toml.write_text('[threat]\nnum_exits = "maybe"\n')
    assert main(["run", "--config", str(toml), f"out={out}"]) == 2
    assert "threat.num_exits='maybe' is invalid" in capsys.readouterr().err


def test_threat_settings_enter_the_cell_json_and_its_hash(tiny_plugin, tmp_path):
    registry = load_registry()
    hashes = {}
    for exits in ("granted", "hidden"):
        for arch in ("granted", "hidden"):
            spec = _spec(tmp_path, "attacks=tiny_attack", f"threat.num_exits={exits}",
                         f"threat.architecture={arch}")
            (cell,) = expand_grid(spec, registry)
            assert cell.to_json()["threat"] == {"num_exits": exits, "architecture": arch}
            hashes[exits, arch] = config_hash(cell, registry)
    assert len(set(hashes.values())) == 4
    spec = _spec(tmp_path, "attacks=tiny_attack", "threat.defense=hidden")
    (hidden,) = expand_grid(spec, registry)
    assert hidden.to_json()["threat"]["defense"] == "hidden"
    assert config_hash(hidden, registry) not in hashes.values()
    (known,) = expand_grid(_spec(tmp_path, "attacks=tiny_attack", "threat.defense=known"),
                           registry)
    assert config_hash(known, registry) == hashes["granted", "granted"]  # the default: unchanged


# -- the attack's context ----------------------------------------------------------------


def test_context_hides_what_the_threat_model_hides(trained_tiny_victim):
    victim = trained_tiny_victim
    _, granted = tiny_oracle(victim, 10)
    assert granted.num_exits == victim.model.num_exits
    assert granted.victim_family == victim.family
    assert granted.cost_fraction == tuple(victim.model.cost_fraction)
    _, no_exits = tiny_oracle(victim, 10, threat=ThreatModel(num_exits="hidden"))
    assert no_exits.num_exits is None and no_exits.victim_family == victim.family
    assert no_exits.cost_fraction is None
    _, no_arch = tiny_oracle(victim, 10, threat=ThreatModel(architecture="hidden"))
    assert no_arch.num_exits == victim.model.num_exits and no_arch.victim_family is None
    assert no_arch.cost_fraction is None
    with pytest.raises(HarnessError, match=r"threat\.architecture=hidden\); pass architecture="):
        no_arch.new_network(3, 0)
    assert no_arch.new_network(3, 0, "small_cnn", width=4).num_exits == 3


@pytest.mark.integration
def test_cells_hand_attacks_the_context_of_their_threat_model(probe_plugin, tmp_path):
    seen = {}
    for exits in ("granted", "hidden"):
        for arch in ("granted", "hidden"):
            spec = _spec(tmp_path, "attacks=ctx_probe", f"threat.num_exits={exits}",
                         f"threat.architecture={arch}")
            (result,) = _results(run_grid(spec, make_plugin_manager(), False).result_paths)
            assert result["status"] == "ok", result["error"]
            assert result["cell"]["threat"] == {"num_exits": exits, "architecture": arch}
            seen[exits, arch] = result["diagnostics"]["attack"]
    full = seen["granted", "granted"]
    assert full["num_exits"] == 3 and full["victim_family"] == "small_cnn"
    assert full["new_network_refused"] is None
    assert len(full["cost_fraction"]) == 3 and full["cost_fraction"][-1] == pytest.approx(1.0)
    assert seen["hidden", "granted"]["num_exits"] is None
    assert seen["hidden", "granted"]["victim_family"] == "small_cnn"
    for key in (("granted", "hidden"), ("hidden", "hidden")):
        assert seen[key]["victim_family"] is None
        assert "threat.architecture=hidden" in seen[key]["new_network_refused"]
    for key in (("hidden", "granted"), ("granted", "hidden"), ("hidden", "hidden")):
        assert seen[key]["cost_fraction"] is None
    board = aggregate(_results((tmp_path / "out" / "cells").rglob("*.json")), set())
    rows = [r for r in board["groups"] if r["attack"] == "ctx_probe"]
    assert sorted(tuple(r["threat"].values()) for r in rows) == sorted(
        (*key, "same") for key in seen)  # rows also name the pool (the default here)
    assert all(r["seeds"] == [0] for r in rows)
    assert "[hidden: exits,arch]" in format_table(board)


# -- grids under hidden settings -----------------------------------------------------------


@pytest.mark.integration
def test_hidden_grid_runs_knockoff_and_records_the_settings(tiny_plugin, tmp_path):
    spec = _spec(tmp_path, "attacks=tiny_attack,knockoff", "budget=60",
                 "attack.knockoff.epochs=1", *HIDDEN)
    summary = run_grid(spec, make_plugin_manager(), show_progress=False)
    by_attack = {r["components"]["attack"]["name"]: r for r in _results(summary.result_paths)}
    for r in by_attack.values():
        assert r["cell"]["threat"] == {"num_exits": "hidden", "architecture": "hidden"}
    knockoff = by_attack["knockoff"]
    assert knockoff["status"] == "ok", knockoff["error"]
    assert knockoff["diagnostics"]["attack"]["substitute_architecture"] == "small_cnn"
    assert len(knockoff["diagnostics"]["substitute_exit_histogram"]) == 4  # its default
    # tiny_attack builds the victim's family without naming it: refused, clearly
    tiny = by_attack["tiny_attack"]
    assert tiny["status"] == "failed"
    assert "threat.architecture=hidden" in tiny["error"]["message"]


@pytest.mark.integration
def test_default_settings_and_hidden_settings_are_separate_leaderboard_rows(tiny_plugin,
                                                                             tmp_path):
    base = ["attacks=knockoff", "budget=60", "attack.knockoff.epochs=1"]
    run_grid(_spec(tmp_path, *base), make_plugin_manager(), False)
    run_grid(_spec(tmp_path, *base, "threat.num_exits=hidden"), make_plugin_manager(), False)
    results = _results((tmp_path / "out" / "cells").rglob("*.json"))
    assert len({r["config_hash"] for r in results}) == 2
    legacy = json.loads(json.dumps(next(r for r in results
                                        if r["cell"]["threat"]["num_exits"] == "granted")))
    del legacy["cell"]["threat"]  # a result written before threat settings were recorded
    legacy["config_hash"] = "0" * 64  # another cell (one cell counts once)
    board = aggregate([*results, legacy], set())
    rows = {tuple(r["threat"].values()): r for r in board["groups"]}
    assert set(rows) == {("granted", "granted", "same"), ("hidden", "granted", "same")}
    assert rows["granted", "granted", "same"]["seeds"] == [0, 0]  # the legacy cell joined
    assert rows["hidden", "granted", "same"]["seeds"] == [0]
    ranked = {(e["attack"], e["threat"]["num_exits"]) for e in board["attack_ranking"]}
    assert ranked == {("knockoff", "granted"), ("knockoff", "hidden")}
    assert all(e["rank"] == 1 for e in board["attack_ranking"])


def test_exit_steal_infers_exits_and_picks_its_own_family_when_both_are_hidden(
        trained_tiny_victim):
    from attacks.exit_steal import ExitStealAttack

    victim = trained_tiny_victim
    oracle, ctx = tiny_oracle(victim, 60, threat=ThreatModel("hidden", "hidden"))
    attack = ExitStealAttack(epochs=1, finetune_epochs=1, architecture_params={"width": 4})
    stolen = attack.steal(oracle, victim.data.attacker.x, ctx)
    diag = stolen.diagnostics
    assert diag["substitute_architecture"] == "small_cnn"
    assert stolen.model.num_exits == diag["estimated_num_exits"] >= 1
    assert len(stolen.strategy.thresholds) == stolen.model.num_exits - 1
