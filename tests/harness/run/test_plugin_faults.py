"""Faulty plugins fail only their own cell, named; the grid goes on; Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.io import signing
from harness.plugins.manager import make_plugin_manager
from harness.run.config import parse_overrides
from harness.run.runner import run_grid
from tests.harness.conftest import install_plugin, trust

pytestmark = pytest.mark.integration  # runs cells, workers or subprocesses

ROOT = Path(__file__).resolve().parents[3]

FAULTY = textwrap.dedent('''
    """Attacks and defenses that misbehave in the ways a real plugin might."""
    import sys
    import time

    import numpy as np

    import harness
    from harness.params import Options
    from harness.protocol import Attack, StolenModel
    from harness.stages import Defense
    from harness.strategy import OutputStrategy


    def _steal(oracle, attacker_data, ctx, diagnostics=None):
        res = oracle.query(attacker_data[:12])
        model = ctx.new_network(3, ctx.seed, width=4)
        est = np.zeros(12, dtype=np.int64)
        return StolenModel(model, OutputStrategy(ctx.policy("max_prob"), (0.1005, 0.1008)),
                           estimated_exits=est, diagnostics=diagnostics or {})


    class Raises(Attack):
        """Raises what ``what`` names from steal()."""

        name = "raises"
        _parameter_constraints = {"what": [Options("system_exit", "keyboard_interrupt")]}

        def __init__(self, what="system_exit"):
            self.what = what

        def steal(self, oracle, attacker_data, ctx):
            if self.what == "system_exit":
                sys.exit(3)
            raise KeyboardInterrupt


    class BadDiagnostics(Attack):
        """Returns diagnostics that are not JSON."""

        name = "bad_diagnostics"

        def __init__(self):
            pass

        def steal(self, oracle, attacker_data, ctx):
            return _steal(oracle, attacker_data, ctx, {"model": object()})


    class Swallower(Attack):
        """Catches every error the oracle raises and returns a model anyway."""

        name = "swallower"

        def __init__(self):
            pass

        def steal(self, oracle, attacker_data, ctx):
            try:
                oracle.query(attacker_data[:4])
            except Exception:
                pass
            return StolenModel(ctx.new_network(3, ctx.seed, width=4),
                               OutputStrategy(ctx.policy("max_prob"), (0.1005, 0.1008)))


    class Sleeper(Attack):
        """Takes a long time (for the Ctrl-C test)."""

        name = "sleeper"

        def __init__(self):
            pass

        def steal(self, oracle, attacker_data, ctx):
            time.sleep(60)
            return _steal(oracle, attacker_data, ctx)


    class BrokenStage(Defense):
        """Its latency stage raises."""

        name = "broken_stage"

        def __init__(self):
            pass

        def shape_latency(self, batch):
            raise ValueError("padding table missing")


    @harness.hookimpl
    def harness_register_attacks(register):
        for cls in (Raises, BadDiagnostics, Swallower, Sleeper):
            register(cls)


    @harness.hookimpl
    def harness_register_defenses(register):
        register(BrokenStage)
''')

FAILING_HOOK = textwrap.dedent('''
    import harness


    @harness.hookimpl
    def harness_cell_finished(result):
        if result["components"]["attack"]["params"].get("queries") == 13:
            raise RuntimeError("metrics server down")
''')


@pytest.fixture
def faulty(tiny_plugin, plugin_dir, monkeypatch):
    trust(monkeypatch, "faulty")  # faults inside cells, also under isolation=none
    install_plugin(plugin_dir, "faulty-plugins", "faulty_plugins", FAULTY, "faulty")
    yield plugin_dir
    sys.modules.pop("faulty_plugins", None)


def _grid(tmp_path, *keys):
    spec = parse_overrides(["victims=tiny_victim", f"out={tmp_path / 'out'}",
                            f"cache_dir={tmp_path / 'cache'}", "replicas=0", *keys])
    summary = run_grid(spec, make_plugin_manager(), show_progress=False)
    by_key = {}
    for path in summary.result_paths:
        if path.exists():
            r = json.loads(path.read_text())
            by_key[(r["components"]["defense"]["name"], r["components"]["attack"]["name"],
                    json.dumps(r["components"]["attack"]["params"], sort_keys=True))] = r
    return summary, by_key


def test_system_exit_keyboard_interrupt_and_bad_diagnostics_fail_only_their_cell(
        faulty, tmp_path, capsys):
    spec = parse_overrides(["victims=tiny_victim", "defenses=none",
                            "attacks=raises,bad_diagnostics,tiny_attack",
                            f"out={tmp_path / 'a'}", f"cache_dir={tmp_path / 'cache'}",
                            "replicas=0"])
    summary = run_grid(spec, make_plugin_manager(), show_progress=True)
    assert (summary.ran, summary.failed) == (3, 2)
    rs = {json.loads(p.read_text())["components"]["attack"]["name"]: json.loads(p.read_text())
          for p in summary.result_paths}
    assert rs["tiny_attack"]["status"] == "ok"
    assert "raised SystemExit: 3" in rs["raises"]["error"]["message"]
    assert rs["raises"]["error"]["component"] == "attack:raises"
    assert rs["bad_diagnostics"]["error"]["component"] == "attack:bad_diagnostics"
    assert "diagnostics are not JSON-serialisable" in rs["bad_diagnostics"]["error"]["message"]
    assert "faulty-plugins" in rs["bad_diagnostics"]["error"]["message"]
    err = capsys.readouterr().err
    assert "bad_diagnostics (seed 0): failed (attack 'bad_diagnostics' (plugin faulty" in err

    spec = parse_overrides(["victims=tiny_victim", "defenses=none", "attacks=raises",
                            "attack.raises.what=keyboard_interrupt", f"out={tmp_path / 'b'}",
                            f"cache_dir={tmp_path / 'cache'}", "replicas=0"])
    summary = run_grid(spec, make_plugin_manager(), show_progress=False)
    assert summary.failed == 1
    error = json.loads(summary.result_paths[0].read_text())["error"]
    assert "raised KeyboardInterrupt" in error["message"] and error["component"] == "attack:raises"


def test_a_defense_stage_that_raises_is_the_defenses_failure(faulty, tmp_path):
    _, rs = _grid(tmp_path, "defenses=broken_stage", "attacks=tiny_attack,swallower")
    assert len(rs) == 2
    for r in rs.values():  # even when the attack swallowed the error
        assert r["status"] == "failed"
        assert r["error"]["component"] == "defense:broken_stage"
        assert ("defense 'broken_stage' (plugin faulty, faulty-plugins 0.1.0): stage "
                "'shape_latency' raised ValueError: padding table missing") in r["error"]["message"]


def test_a_failing_cell_finished_hook_fails_that_cell_naming_the_plugin(tiny_plugin, plugin_dir,
                                                                        tmp_path, monkeypatch):
    trust(monkeypatch, "hooky")  # a cell_finished hook runs in the evaluator: trusted
    install_plugin(plugin_dir, "hook-plugin", "hook_plugin", FAILING_HOOK, "hooky")
    try:
        summary, rs = _grid(tmp_path, "defenses=none", "attacks=tiny_attack", "seeds=0,1",
                            "attack.tiny_attack.queries=13")
        assert (summary.ran, summary.failed) == (2, 2)
        for r in rs.values():
            assert r["error"]["component"] == "plugin:hooky"
            assert "plugin 'hooky' (distribution hook-plugin 0.1.0)" in r["error"]["message"]
            assert "metrics server down" in r["error"]["message"]
        ok, _ = _grid(tmp_path / "other", "defenses=none", "attacks=tiny_attack")
        assert ok.failed == 0  # the hook only fails the cells it raises on
    finally:
        sys.modules.pop("hook_plugin", None)


def test_an_io_error_writing_one_cell_does_not_stop_the_grid(tiny_plugin, tmp_path, monkeypatch,
                                                              capsys):
    real = signing.write_json_atomic
    calls = []

    def flaky(path, obj):
        if "cells" in Path(path).parts:
            calls.append(path)
            if len(calls) == 1:  # the first cell's file (its manifest entry comes after it)
                raise OSError(28, "No space left on device")
        return real(path, obj)

    monkeypatch.setattr(signing, "write_json_atomic", flaky)
    spec = parse_overrides(["victims=tiny_victim", "defenses=none", "attacks=tiny_attack",
                            "seeds=0,1", f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'c'}",
                            "isolation=none", "replicas=0"])
    summary = run_grid(spec, make_plugin_manager(), show_progress=True)
    assert (summary.ran, summary.failed) == (2, 1)
    assert not summary.result_paths[0].exists() and summary.result_paths[1].exists()
    assert "No space left on device" in capsys.readouterr().err
    again = run_grid(spec, make_plugin_manager(), show_progress=False)
    assert (again.reused, again.ran, again.failed) == (1, 1, 0)


CTRL_C = textwrap.dedent("""
    import sys
    from harness.cli import main
    sys.exit(main(["run", "victims=tiny_victim", "defenses=none", "attacks=tiny_attack,sleeper",
                   "out=" + sys.argv[1], "cache_dir=" + sys.argv[2], "replicas=0"]))
""")


def test_ctrl_c_stops_the_grid_cleanly_and_keeps_finished_cells(faulty, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": f"{faulty}{os.pathsep}{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C, str(out), str(tmp_path / "cache")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list(out.glob("cells/*/*/tiny_attack/*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # well inside the sleeper's steal()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted (Ctrl-C) after 1 of 2 cells; 1 finished cells are kept" in err
    kept = list(out.glob("cells/**/*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["status"] == "ok"
