"""The replica agreement (docs/design.md section 6, "Context"): ``replicas=N`` of ``harness run``.

Replicas are the victim retrained with other seeds (never its own), scored against it
like stolen models, cached per run dir and reused, deterministic, ``not_available`` for a
victim without ``train_seed``, and shown beside every attack in the leaderboard.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.board.leaderboard import build_leaderboard
from harness.board.replica_agreement import format_replica_agreement
from harness.board.tables import format_table
from harness.cell.server import CellEnvironment
from harness.cli import main
from harness.errors import ConfigError
from harness.io.schema import leaderboard_schema, replica_agreement_schema
from harness.plugins.registry import load_registry
from harness.run import replicas as replicas_mod
from harness.run.config import parse_overrides
from harness.run.grid import expand_grid
from harness.run.replicas import SEED_MODULUS, compute_replica_agreement, replica_hash, replica_seeds
from harness.run.runner import run_grid

CHEAP = ["victim.digits_cnn.epochs=2", "victim.digits_cnn.width=8"]
"""A digits_cnn that trains in well under a second."""


def _spec(tmp_path: Path, *extra: str, victim: str = "digits_cnn"):
    params = CHEAP if victim == "digits_cnn" else []
    return parse_overrides([f"victims={victim}", "defenses=none", "attacks=tiny_attack",
                            "isolation=none", f"out={tmp_path / 'out'}",
                            f"cache_dir={tmp_path / 'cache'}", *params, "secret=public",
                            *extra])


def _replica_agreement(summary) -> dict:
    (path,) = summary.replica_files
    return json.loads(Path(path).read_text())


# -- seeds and keys ------------------------------------------------------------------------


@given(st.integers(0, SEED_MODULUS - 1), st.integers(0, 20))
def test_replica_seeds_never_equal_the_victims_and_are_distinct(train_seed, n):
    seeds = replica_seeds(train_seed, n)
    assert len(seeds) == n == len(set(seeds))
    assert train_seed not in seeds
    assert all(0 <= s < SEED_MODULUS for s in seeds)
    assert seeds == replica_seeds(train_seed, n)  # deterministic


def test_replica_seeds_are_train_seed_plus_1000_plus_k():
    assert replica_seeds(0, 3) == (1000, 1001, 1002)
    assert replica_seeds(SEED_MODULUS - 1, 2) == (999, 1000)  # wraps, still never the victim's


@pytest.mark.parametrize(("raw", "message"), [
    ("-1", r"replicas='-1' is invalid; allowed: an integer in \[0, 20\]"),
    ("21", r"replicas='21' is invalid"), ("three", r"replicas='three' is invalid"),
    ("1.5", r"replicas='1.5' is invalid")])
def test_bad_replicas_value_is_a_config_error(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_overrides([f"replicas={raw}"])


def test_replicas_default_and_off():
    assert parse_overrides([]).replicas == 3
    assert parse_overrides(["replicas=0"]).replicas == 0


def test_replica_hash_covers_victim_params_count_and_secret_mode(tiny_plugin, tmp_path,
                                                                 monkeypatch):
    registry = load_registry()
    (cell,) = expand_grid(_spec(tmp_path), registry)
    (other,) = expand_grid(_spec(tmp_path, "victim.digits_cnn.lr=0.01"), registry)
    base = replica_hash(registry, cell.victim, 3, "cpu")
    assert base == replica_hash(registry, cell.victim, 3, "cpu")
    assert base != replica_hash(registry, cell.victim, 2, "cpu")
    assert base != replica_hash(registry, other.victim, 3, "cpu")
    monkeypatch.setenv("HARNESS_SECRET", "s3cret")
    assert base != replica_hash(registry, cell.victim, 3, "cpu")


# -- the step of harness run ---------------------------------------------------------------


@pytest.mark.integration
def test_replica_agreement_is_computed_cached_and_reused(tiny_plugin, tmp_path, monkeypatch):
    summary = run_grid(_spec(tmp_path, "replicas=2"), show_progress=False)
    record = _replica_agreement(summary)
    jsonschema.validate(record, replica_agreement_schema())
    assert record["status"] == "ok" and record["reason"] is None
    assert record["victim_train_seed"] == 0 and record["seeds"] == [1000, 1001]
    hashes = {r["weights_hash"] for r in record["replicas"]}
    assert len(hashes) == 2 and record["victim_weights_hash"] not in hashes
    for rep in record["replicas"]:
        assert 0 <= rep["metrics"]["exit_agreement"] <= 1
        assert 0 <= rep["metrics"]["fidelity"] <= 1
        assert rep["metrics"]["efficiency_gap"] == pytest.approx(
            abs(rep["metrics"]["cost_ratio"] - 1))
    summary_ea = record["metrics"]["exit_agreement"]
    values = [r["metrics"]["exit_agreement"] for r in record["replicas"]]
    assert summary_ea["n"] == 2 and summary_ea["mean"] == pytest.approx(sum(values) / 2)
    lo, hi = summary_ea["ci95"]
    assert lo <= summary_ea["mean"] <= hi
    # every replica's weights are in the cache, beside the victim's
    assert len(list((tmp_path / "cache" / "weights").glob("*.pt"))) == 3
    # a second run reuses the file and trains nothing
    path = Path(summary.replica_files[0])
    mtime = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the replica agreement was recomputed")

    monkeypatch.setattr(replicas_mod, "compute_replica_agreement", no_training)
    again = run_grid(_spec(tmp_path, "replicas=2"), show_progress=False)
    assert again.replica_files == summary.replica_files and path.stat().st_mtime_ns == mtime
    assert again.reused == 1


@pytest.mark.integration
def test_replica_agreement_is_deterministic(tiny_plugin, tmp_path):
    registry = load_registry()
    (cell,) = expand_grid(_spec(tmp_path), registry)
    runs = []
    for name in ("a", "b"):  # separate caches: trained twice from scratch
        env = CellEnvironment(cache_dir=tmp_path / name, data_root=None, out=tmp_path / name)
        runs.append(compute_replica_agreement(registry, cell.victim, 2, env, "cpu"))
    assert runs[0] == runs[1]


@pytest.mark.integration
def test_victim_without_train_seed_is_not_available(tiny_plugin, tmp_path):
    summary = run_grid(_spec(tmp_path, victim="tiny_victim"), show_progress=False)
    record = _replica_agreement(summary)
    assert record["status"] == "not_available" and record["replicas"] == []
    assert "has no train_seed parameter" in record["reason"]
    assert "tiny_victim" in record["reason"]
    board = build_leaderboard(tmp_path / "out", set())
    (entry,) = board["replica_agreement"]
    assert entry["status"] == "not_available" and entry["n"] == 0
    assert "replica agreement: n/a" in format_table(board)
    assert "tiny_victim: n/a (not available: victim 'tiny_victim'" in format_replica_agreement(board)


@pytest.mark.integration
def test_a_failing_replica_agreement_is_recorded_and_retried(tiny_plugin, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("no space left for replicas")

    with monkeypatch.context() as patched:
        patched.setattr(replicas_mod, "prepare_registered_victim", boom)
        summary = run_grid(_spec(tmp_path, "replicas=1"), show_progress=False)
    assert summary.failed == 0  # the cells are unaffected
    record = _replica_agreement(summary)
    assert record["status"] == "failed"
    assert record["reason"] == "RuntimeError: no space left for replicas"
    again = run_grid(_spec(tmp_path, "replicas=1"), show_progress=False)
    assert _replica_agreement(again)["status"] == "ok"


@pytest.mark.integration
def test_replicas_zero_and_old_run_dirs_show_n_a(tiny_plugin, tmp_path):
    summary = run_grid(_spec(tmp_path, "replicas=0"), show_progress=False)
    assert summary.replica_files == () and not (tmp_path / "out" / "replicas").exists()
    board = build_leaderboard(tmp_path / "out", set())
    (entry,) = board["replica_agreement"]
    assert entry["status"] == "missing" and entry["metrics"] == {}
    assert "replica agreement: n/a" in format_table(board)


@pytest.mark.integration
def test_corrupt_replica_file_is_recomputed(tiny_plugin, tmp_path):
    summary = run_grid(_spec(tmp_path, "replicas=1"), show_progress=False)
    path = Path(summary.replica_files[0])
    good = json.loads(path.read_text())
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="replica agreement file .* is corrupt"):
        again = run_grid(_spec(tmp_path, "replicas=1"), show_progress=False)
    assert _replica_agreement(again)["metrics"] == good["metrics"]


# -- the leaderboard -------------------------------------------------------------------------


@pytest.mark.integration
def test_leaderboard_shows_the_replica_agreement_beside_every_attack(tiny_plugin, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", "victims=digits_cnn", "attacks=tiny_attack", "defenses=none", "replicas=2",
            f"out={out}", f"cache_dir={tmp_path / 'cache'}", "--quiet", *CHEAP]
    assert main(args) == 0
    printed = capsys.readouterr().out
    board = json.loads((out / "leaderboard.json").read_text())
    jsonschema.validate(board, leaderboard_schema())
    (entry,) = board["replica_agreement"]
    assert entry["victim"] == "digits_cnn" and entry["status"] == "ok"
    assert entry["n"] == 2 and entry["seeds"] == [1000, 1001]
    assert [r["seed"] for r in entry["replicas"]] == [1000, 1001]
    ea = entry["metrics"]["exit_agreement"]
    assert set(ea) == {"mean", "ci95", "n"} and ea["n"] == 2
    (ranked,) = board["attack_ranking"]
    assert ranked["replica_exit_agreement"] == ea["mean"]
    assert ranked["replica_fidelity"] == entry["metrics"]["fidelity"]["mean"]
    assert "replica agreement (2 replicas)" in printed
    assert f"exit agreement {ea['mean']:.3f} [{ea['ci95'][0]:.3f}, {ea['ci95'][1]:.3f}]" in printed
    assert main(["leaderboard", str(out)]) == 0
    assert "replica agreement (2 replicas)" in capsys.readouterr().out
    # the committed schema is the generated one (python -m harness.io.schema)
    from harness.io.schema import combined_schema

    committed = json.loads((Path(__file__).parents[3] / "leaderboard" / "schema.json").read_text())
    assert committed == json.loads(json.dumps(combined_schema()))
    jsonschema.validate(board, committed)


@pytest.mark.integration
def test_secret_mode_salts_replicas_like_the_victim(tiny_plugin, tmp_path, monkeypatch):
    public = _replica_agreement(run_grid(_spec(tmp_path / "p", "replicas=1", "secret=public"),
                               show_progress=False))
    folder = _replica_agreement(run_grid(_spec(tmp_path / "f", "replicas=1", "secret=folder"),
                               show_progress=False))
    assert folder["secret_mode"] == "folder"  # the default: the folder's own secret
    assert folder["victim_weights_hash"] != public["victim_weights_hash"]
    monkeypatch.setenv("HARNESS_SECRET", "s3cret")
    secret = _replica_agreement(run_grid(_spec(tmp_path / "s", "replicas=1"), show_progress=False))
    assert (public["secret_mode"], secret["secret_mode"]) == ("public", "secret")
    assert public["seeds"] == secret["seeds"] == [1000]  # recorded unsalted
    assert secret["replicas"][0]["weights_hash"] != public["replicas"][0]["weights_hash"]
    assert secret["victim_weights_hash"] != public["victim_weights_hash"]
