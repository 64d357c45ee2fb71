from __future__ import annotations

import json
import os
import stat

import pytest

from harness.errors import OutputDirError
from harness.io.results import load_result, validate_result
from harness.io.signing import trust_for
from harness.plugins.manager import make_plugin_manager
from harness.run.config import parse_overrides
from harness.run.runner import run_grid

pytestmark = pytest.mark.integration  # runs cells, workers or subprocesses

BASE = ["victims=tiny_victim", "defenses=none,pad_tiny", "attacks=tiny_attack"]


def spec(tmp_path, *extra):
    """The runner's tests run cells in this process: isolation is tested elsewhere."""
    return parse_overrides([*BASE, f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}",
                            "isolation=none", "replicas=0", "secret=public", *extra])


def results(paths):
    return [json.loads(p.read_text()) for p in paths]


def test_grid_writes_valid_results_and_resumes(tiny_plugin, tmp_path):
    s = spec(tmp_path, "seeds=0,1")
    first = run_grid(s, make_plugin_manager(), show_progress=False)
    assert (first.total, first.ran, first.failed) == (4, 4, 0)
    rs = results(first.result_paths)
    for r in rs:
        validate_result(r)
        assert r["status"] == "ok"
        assert r["components"]["attack"]["distribution"] == "tiny-harness-plugin"
        assert r["timing"]["mode"] == "realistic"
        assert 0 <= r["metrics"]["exit_agreement"] <= 1
        assert r["metrics"]["queries_used"] == 20
    pad = next(r for r in rs if r["components"]["defense"]["name"] == "pad_tiny")
    assert pad["metrics"]["latency_overhead_p50"] > 0
    mtimes = [p.stat().st_mtime_ns for p in first.result_paths]
    again = run_grid(s, make_plugin_manager(), show_progress=False)
    assert (again.reused, again.ran) == (4, 0)
    assert [p.stat().st_mtime_ns for p in again.result_paths] == mtimes


def test_same_spec_and_seed_identical_metrics(tiny_plugin, tmp_path):
    a = results(run_grid(spec(tmp_path / "a"), make_plugin_manager(), False).result_paths)
    b = results(run_grid(spec(tmp_path / "b"), make_plugin_manager(), False).result_paths)
    assert [r["metrics"] for r in a] == [r["metrics"] for r in b]
    assert [r["config_hash"] for r in a] == [r["config_hash"] for r in b]


def test_failing_cell_recorded_and_grid_goes_on(tiny_plugin, tmp_path):
    s = parse_overrides(["victims=tiny_victim", "defenses=none", "attacks=tiny_attack,boom",
                         f"out={tmp_path / 'out'}"])
    summary = run_grid(s, make_plugin_manager(), show_progress=False)
    assert summary.failed == 1
    by_attack = {r["components"]["attack"]["name"]: r for r in results(summary.result_paths)}
    assert by_attack["tiny_attack"]["status"] == "ok"
    err = by_attack["boom"]["error"]
    assert by_attack["boom"]["status"] == "failed" and "kaboom" in err["message"]
    assert err["component"] == "attack:boom" and "tiny-harness-plugin" in err["message"]
    # failed cells are retried on the next run, finished ones reused
    again = run_grid(s, make_plugin_manager(), show_progress=False)
    assert (again.reused, again.ran, again.failed) == (1, 1, 1)


def test_interrupted_run_loses_no_finished_cell(tiny_plugin, tmp_path):
    s = spec(tmp_path, "seeds=0,1")
    summary = run_grid(s, make_plugin_manager(), show_progress=False)
    keep, lost = summary.result_paths[:2], summary.result_paths[2:]
    for p in lost:  # simulate a kill: one half-written file, one never written
        p.unlink()
    lost[0].write_text(json.dumps(results([keep[0]])[0])[:100])
    with pytest.warns(UserWarning, match="not valid JSON.*running it again"):
        again = run_grid(s, make_plugin_manager(), show_progress=False)
    assert (again.reused, again.ran, again.failed) == (2, 2, 0)
    for p in again.result_paths:
        assert load_result(p, trust_for(p))["status"] == "ok"


def test_out_pointing_at_file_or_unwritable(tiny_plugin, tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(OutputDirError, match="is a file"):
        run_grid(parse_overrides([*BASE, f"out={f}"]), make_plugin_manager(), False)
    with pytest.raises(OutputDirError, match="cannot be created or written"):
        run_grid(parse_overrides([*BASE, f"out={f / 'sub'}"]), make_plugin_manager(), False)
    if os.geteuid() != 0:  # root may write anywhere; a read-only folder stops others
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        with pytest.raises(OutputDirError, match="cannot be created or written"):
            run_grid(parse_overrides([*BASE, f"out={ro / 'sub'}"]), make_plugin_manager(), False)


def test_unknown_names_and_stray_params_fail_before_work(tiny_plugin, tmp_path):
    from harness.errors import ConfigError, UnknownComponentError

    out = tmp_path / "out"
    with pytest.raises(UnknownComponentError, match=r"available: .*tiny_attack"):
        run_grid(parse_overrides(["attacks=nope", f"out={out}"]), make_plugin_manager(), False)
    with pytest.raises(ConfigError, match="no parameter"):
        run_grid(parse_overrides([*BASE, "attack.tiny_attack.bogus=1", f"out={out}"]),
                 make_plugin_manager(), False)
    with pytest.raises(ConfigError, match="not in this grid"):
        run_grid(parse_overrides([*BASE, "attack.knockoff.epochs=1", f"out={out}"]),
                 make_plugin_manager(), False)
    assert not out.exists()


def test_process_executor_and_timeout(tiny_plugin, tmp_path):
    s = spec(tmp_path, "executor=process", "jobs=2")
    summary = run_grid(s, make_plugin_manager(), show_progress=False)
    assert (summary.ran, summary.failed) == (2, 0)
    serial = run_grid(spec(tmp_path / "serial"), make_plugin_manager(), False)
    assert ([r["metrics"] for r in results(summary.result_paths)]
            == [r["metrics"] for r in results(serial.result_paths)])
    t = run_grid(spec(tmp_path / "t", "executor=process", "timeout=0.01"), make_plugin_manager(),
                 False)
    assert t.failed == 2
    assert "timed out" in results(t.result_paths)[0]["error"]["message"]


def test_cell_finished_hook_sees_every_new_result(tiny_plugin, tmp_path):
    import harness

    class Collector:
        def __init__(self):
            self.seen = []

        @harness.hookimpl
        def harness_cell_finished(self, result):
            self.seen.append((result["components"]["defense"]["name"], result["status"]))

    collector = Collector()
    pm = make_plugin_manager(extra_plugins=(collector,))
    run_grid(spec(tmp_path), pm, show_progress=False)
    assert sorted(collector.seen) == [("none", "ok"), ("pad_tiny", "ok")]
    run_grid(spec(tmp_path), pm, show_progress=False)  # reused cells are not announced again
    assert len(collector.seen) == 2
