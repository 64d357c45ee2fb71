"""Tamper-evident results: content digests, stale code, --force, permissions, bounded
metrics, content-identified cells, and the strict `leaderboard build`."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from harness.board.build import build_board
from harness.cli.main import main
from harness.errors import ResultFileError
from harness.io.integrity import seal
from harness.io.results import read_result
from harness.io.signing import trust_for
from harness.plugins.registry import load_registry
from harness.plugins.source import component_source_digest

pytestmark = pytest.mark.integration  # runs cells, workers or subprocesses

GRID = ["victims=tiny_victim", "attacks=tiny_attack", "defenses=none,pad_tiny", "seeds=0",
        "replicas=0", "isolation=none"]


def _run(tmp_path: Path, *extra: str) -> int:
    return main(["run", *GRID, f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}",
                 "--quiet", *extra])


def _cells(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "out" / "cells").rglob("*.json"))


def _edit(path: Path, change) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def test_cells_carry_a_digest_and_normal_permissions(tiny_plugin, tmp_path):
    old = os.umask(0o022)
    try:
        assert _run(tmp_path) == 0
    finally:
        os.umask(old)
    for path in _cells(tmp_path):
        result = read_result(path, trust_for(path))
        assert len(result["content_digest"]["sha256"]) == 64
        assert "metrics.exit_agreement" in result["content_digest"]["fields"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        assert len(result["components"]["attack"]["source_digest"]) == 64


def test_run_reports_the_edited_field_and_recomputes(tiny_plugin, tmp_path, capsys):
    assert _run(tmp_path) == 0
    first = _cells(tmp_path)[0]
    original = read_result(first, trust_for(first))["metrics"]["exit_agreement"]
    _edit(first, lambda r: r["metrics"].__setitem__("exit_agreement", 0.999))
    capsys.readouterr()
    main(["run", *GRID, f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}"])
    err = capsys.readouterr().err
    assert "field metrics.exit_agreement was edited" in err and "running it again" in err
    with pytest.raises(ResultFileError):  # what read_result says of such a file
        _edit(first, lambda r: r["metrics"].__setitem__("exit_agreement", 0.5))
        read_result(first, trust_for(first))
    main(["run", *GRID, f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}"])
    assert "1 to run" in err
    assert read_result(first, trust_for(first))["metrics"]["exit_agreement"] == original


def test_truncated_cell_is_reported_and_run_again(tiny_plugin, tmp_path, capsys):
    assert _run(tmp_path) == 0
    first = _cells(tmp_path)[0]
    first.write_bytes(first.read_bytes()[:100])
    capsys.readouterr()
    main(["run", *GRID, f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}"])
    assert "not valid JSON" in capsys.readouterr().err
    read_result(first, trust_for(first))


def test_force_reruns_finished_cells(tiny_plugin, tmp_path, capsys):
    assert _run(tmp_path) == 0
    before = {p: read_result(p, trust_for(p))["finished_at"] + str(p.stat().st_mtime_ns)
              for p in _cells(tmp_path)}
    capsys.readouterr()
    main(["run", *GRID, f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}", "--force"])
    err = capsys.readouterr().err
    assert "--force" in err and "2 to run" in err
    after = {p: read_result(p, trust_for(p))["finished_at"] + str(p.stat().st_mtime_ns)
             for p in _cells(tmp_path)}
    assert all(before[p] != after[p] for p in before)


def test_out_of_range_metric_is_refused_with_the_field_named(tiny_plugin, tmp_path):
    assert _run(tmp_path) == 0
    first = _cells(tmp_path)[0]
    for metric, value in (("exit_agreement", 5.0), ("fidelity", -3)):
        _edit(first, lambda r, m=metric, v=value: r["metrics"].__setitem__(m, v))
        with pytest.raises(ResultFileError, match=rf"metrics\.{metric}"):
            read_result(first, trust_for(first))


def test_changed_plugin_code_changes_the_digest_and_makes_cells_stale(tiny_plugin, plugin_dir,
                                                                      tmp_path, capsys):
    assert _run(tmp_path) == 0
    registry = load_registry()
    entry = registry.get("attack", "tiny_attack")
    before = entry.source_digest()
    module = plugin_dir / "tiny_harness_plugin.py"
    module.write_text(module.read_text() + "\n# a comment: the code changed, not the version\n")
    assert component_source_digest(entry.cls) != before
    capsys.readouterr()
    main(["run", *GRID, f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}"])
    assert "0 finished earlier (reused), 2 to run" in capsys.readouterr().err


def test_build_refuses_edited_and_truncated_cells_naming_the_field(tiny_plugin, tmp_path):
    assert _run(tmp_path) == 0
    board = build_board([tmp_path / "out"], tmp_path / "board", set(), command="test")
    assert board["cells"]["ok"] == 2 and board["command"] == "test"
    assert board["sources"] == [{"run_dir": "../out", "cells": 2}]  # no path of this machine
    assert len(list((tmp_path / "board" / "cells").rglob("*.json"))) == 2
    for row in board["groups"]:  # the copied files are the rows' cells
        for cell in row["cells"]:
            read_result(tmp_path / "board" / cell, trust_for(tmp_path / "board" / cell))
    first = _cells(tmp_path)[0]
    _edit(first, lambda r: r["metrics"].__setitem__("fidelity", 0.5))
    with pytest.raises(ResultFileError, match=r"metrics\.fidelity was edited"):
        build_board([tmp_path / "out"], tmp_path / "board", set())
    first.write_bytes(first.read_bytes()[:50])
    with pytest.raises(ResultFileError, match="not valid JSON"):
        build_board([tmp_path / "out"], tmp_path / "board", set())


def test_build_counts_a_copied_cell_once(tiny_plugin, tmp_path):
    assert _run(tmp_path) == 0
    shutil.copytree(tmp_path / "out", tmp_path / "copy")  # the same run, given twice
    with pytest.warns(UserWarning, match="copies of one cell result"):
        board = build_board([tmp_path / "out", tmp_path / "copy"], tmp_path / "board", set())
    assert board["cells"]["ok"] == 2
    assert sum(len(r["seeds"]) for r in board["groups"]) == 2


def test_build_refuses_mixed_schema_versions(tiny_plugin, tmp_path, capsys):
    assert _run(tmp_path) == 0
    old_run = tmp_path / "old"
    shutil.copytree(tmp_path / "out", old_run)
    _edit(next((old_run / "cells").rglob("*.json")),
          lambda r: r.__setitem__("schema_version", 2))
    with pytest.raises(ResultFileError, match=r"mix result versions.*schema 2"):
        build_board([tmp_path / "out", old_run], tmp_path / "board", set())
    assert main(["leaderboard", "build", str(tmp_path / "out"), str(old_run), "-o",
                 str(tmp_path / "board")]) == 2
    assert "Re-run the old grids" in capsys.readouterr().err
    assert not (tmp_path / "board").exists()  # refused before anything was written


def test_show_prints_untruncated_tables(tiny_plugin, tmp_path, capsys):
    assert _run(tmp_path) == 0
    assert main(["leaderboard", "build", str(tmp_path / "out"), "-o", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "show", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "exit_estimation_accuracy" in out and "tiny_attack (unranked: not isolated" in out
    assert main(["leaderboard", "show", str(tmp_path / "nothing")]) == 2


def _forge(path: Path, change) -> None:
    """Edit a cell the way a forger without the key would: change it, reseal the digest."""
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(seal(obj)))


def test_forged_and_planted_cells_are_refused_by_run_build_and_verify(tiny_plugin, tmp_path,
                                                                      capsys):
    assert _run(tmp_path, "secret=public") == 0  # verify re-runs the board bit-exactly
    forged, genuine = _cells(tmp_path)
    _forge(forged, lambda r: r["metrics"].__setitem__("exit_agreement", 0.999))
    planted = genuine.with_name("seed7-planted.json")  # signed by the folder, listed nowhere
    shutil.copyfile(genuine, planted)
    with pytest.raises(ResultFileError, match="not signed"):
        build_board([tmp_path / "out"], tmp_path / "board", set())
    forged.unlink()
    with pytest.raises(ResultFileError, match="no signed manifest"):
        build_board([tmp_path / "out"], tmp_path / "board", set())
    capsys.readouterr()
    assert main(["leaderboard", "verify", str(tmp_path / "out"), "--sample", "1"]) == 1
    out = capsys.readouterr().out
    assert "seed7-planted.json: not loadable" in out and "no signed manifest" in out
    assert "signatures checked against key" in out and "verify: FAILED" in out
    planted.unlink()
    _run(tmp_path, "secret=public")  # the forged cell's file is gone: run again, signed and listed
    board = build_board([tmp_path / "out"], tmp_path / "board", set())
    assert board["cells"]["ok"] == 2 and len(board["signing_keys"]) == 1
    assert (tmp_path / "board" / "signing-keys.json").is_file()
    assert not (tmp_path / "board" / ".harness-signing-key").exists()  # the key stays home
    # a forger who replaces the board's public keys and signs with their own is caught by
    # whoever compares the fingerprints: verify names the keys it checked against
    capsys.readouterr()
    assert main(["leaderboard", "verify", str(tmp_path / "board"), "--sample", "1"]) == 0
    assert board["signing_keys"][0] in capsys.readouterr().out


def test_run_recomputes_a_resealed_cell_saying_it_is_not_signed(tiny_plugin, tmp_path, capsys):
    assert _run(tmp_path) == 0
    first = _cells(tmp_path)[0]
    original = read_result(first, trust_for(first))["metrics"]["exit_agreement"]
    _forge(first, lambda r: r["metrics"].__setitem__("exit_agreement", 0.999))
    capsys.readouterr()
    main(["run", *GRID, f"out={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}"])
    err = capsys.readouterr().err
    assert "not signed" in err and "running it again" in err and "1 to run" in err
    assert read_result(first, trust_for(first))["metrics"]["exit_agreement"] == original
