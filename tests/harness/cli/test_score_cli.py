"""``harness score DIR``: a stolen-model folder scored against a local victim with the
cell's metrics; what a remote steal cannot have is left out; bad folders and keys fail
clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cell.server import prepare_registered_victim
from harness.cell.spec import CellEnvironment
from harness.cell.stolen import encode_stolen, save_stolen
from harness.cli.main import main
from harness.protocol import StolenModel
from harness.testing.fixtures import default_registry

pytestmark = pytest.mark.integration  # trains a small victim

PARAMS = {"epochs": 1, "width": 8}
KEYS = [f"victim.digits_cnn.{k}={v}" for k, v in PARAMS.items()]


def _copy_folder(tmp_path: Path, params: dict) -> Path:
    """A folder as harness attack writes it, holding an exact copy of a digits_cnn victim."""
    env = CellEnvironment(cache_dir=tmp_path / "cache", data_root=None)
    victim = prepare_registered_victim(default_registry(), "digits_cnn", params, env, "cpu")
    record = encode_stolen(StolenModel(victim.model, victim.strategy))
    folder = tmp_path / "stolen"
    save_stolen(folder, record, {"attack": {"name": "copycat", "params": {}},
                                 "server": {"url": "http://127.0.0.1:9",
                                            "health": {"victim": "digits_cnn"}},
                                 "queries_used": 0, "seed": 0})
    return folder


def _score(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["score", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_an_exact_copy_scores_one_and_another_victim_less(tmp_path, capsys):
    folder = _copy_folder(tmp_path, PARAMS)
    code, out, err = _score(capsys, str(folder), *KEYS, f"cache_dir={tmp_path / 'cache'}")
    assert code == 0, err
    record = json.loads((folder / "score.json").read_text())
    assert record["kind"] == "remote_score" and record["remote"] is True
    assert record["victim"]["name"] == "digits_cnn" and record["attack"]["name"] == "copycat"
    metrics = record["metrics"]
    assert metrics["exit_agreement"] == 1.0 and metrics["fidelity"] == 1.0
    assert metrics["efficiency_gap"] == 0.0
    assert "capacity_exit_accuracy" in record["not_available"]
    assert "capacity_exit_accuracy" not in metrics  # never guessed
    assert "exit agreement 1.000" in out
    # scored against a victim trained with another seed, the same copy agrees less
    other = tmp_path / "other.json"
    code, _, err = _score(capsys, str(folder), *KEYS, "victim.digits_cnn.train_seed=7",
                          f"out={other}", f"cache_dir={tmp_path / 'cache'}")
    assert code == 0, err
    assert json.loads(other.read_text())["metrics"]["exit_agreement"] < 1.0


def test_bad_folders_and_keys_fail_clearly(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _score(capsys, str(empty))
    assert code == 2 and "holds no stolen model" in err and "Traceback" not in err
    (empty / "stolen.json").write_text("{not json")
    (empty / "model.pt").write_bytes(b"")
    code, _, err = _score(capsys, str(empty))
    assert code == 2 and "not readable JSON" in err
    (empty / "stolen.json").write_text(json.dumps({"format": 1}))
    code, _, err = _score(capsys, str(empty), "budget=5")
    assert code == 2 and "unknown key 'budget'" in err
    code, _, err = _score(capsys, str(empty))
    assert code == 2 and "give victim=NAME" in err


def test_a_scored_folder_joins_a_board_as_a_remote_row_never_ranked(tiny_plugin, tmp_path,
                                                                     capsys):
    folder = _copy_folder(tmp_path, PARAMS)
    assert _score(capsys, str(folder), *KEYS, f"cache_dir={tmp_path / 'cache'}")[0] == 0
    assert main(["run", "victims=tiny_victim", "attacks=tiny_attack", "defenses=none",
                 "seeds=0", "replicas=0", "isolation=none", f"out={tmp_path / 'out'}",
                 f"cache_dir={tmp_path / 'cache'}", "--quiet"]) == 0
    code = main(["leaderboard", "build", str(tmp_path / "out"), "-o", str(tmp_path / "board"),
                 "--remote", str(folder)])
    printed = capsys.readouterr().out
    assert code == 0
    board = json.loads((tmp_path / "board" / "leaderboard.json").read_text())
    (row,) = board["remote_attacks"]
    assert row["remote"] is True and row["ranked"] is False and row["attack"] == "copycat"
    assert row["metrics"]["exit_agreement"] == 1.0
    assert (tmp_path / "board" / row["file"]).is_file()  # copied beside the cells
    assert all(e["attack"] != "copycat" for e in board["attack_ranking"])
    assert "remote attacks" in printed and "copycat" in printed
    # a folder that was never scored is refused before anything is written
    (tmp_path / "unscored").mkdir()
    code = main(["leaderboard", "build", str(tmp_path / "out"), "-o", str(tmp_path / "b2"),
                 "--remote", str(tmp_path / "unscored")])
    assert code == 2 and "run `harness score" in capsys.readouterr().err
    assert not (tmp_path / "b2").exists()
