"""``leaderboard verify``: re-run committed cells, catch changed numbers, stale and
unverifiable cells (harness/board/verify.py, respec.py, tolerance.py).

A small real grid (trained digits victim, ``exit_steal`` with a few epochs, ``jitter``)
runs once per module in ``analytic`` and ``realistic`` timing. The first test re-runs
every cell for real and demands bit-equality; the others inject their change into the
loaded results in memory (cell files may be refused as tampered) and share the real
re-runs through a memo keyed by the rebuilt cell.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.board.build import build_board
from harness.board.respec import CannotRebuild, rebuild_cell
from harness.board.tolerance import EXACT, MachineClass, Tolerance, regime_of, tolerance_for
from harness.board.verify import (
    SecretPlan,
    compare_results,
    load_board,
    select_sample,
    verify_leaderboard,
    verify_results,
)
from harness.errors import ConfigError
from harness.io.secret import secret_env, secret_mode
from harness.plugins.manager import make_plugin_manager
from harness.plugins.registry import load_registry
from harness.plugins.source import core_source_digest
from harness.run.config import parse_overrides
from harness.run.grid import config_hash
from harness.run.runner import compute_result, run_grid

pytestmark = pytest.mark.integration  # runs cells, workers or subprocesses

CHEAP = ["victims=digits_cnn", "victim.digits_cnn.epochs=2", "victim.digits_cnn.width=8",
         "attacks=exit_steal", "attack.exit_steal.epochs=2", "attack.exit_steal.finetune_epochs=1",
         "budget=60", "isolation=none", "replicas=0"]
GRIDS = {"analytic": ["defenses=none,jitter"], "realistic": ["defenses=jitter"]}


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A board built from two tiny runs (3 cells), and their victim cache."""
    root = tmp_path_factory.mktemp("verify")
    cache = root / "cache"
    for timing, extra in GRIDS.items():
        spec = parse_overrides([*CHEAP, *extra, f"timing={timing}", f"out={root / timing}",
                                f"cache_dir={cache}", "secret=public"])  # verified elsewhere
        summary = run_grid(spec, make_plugin_manager(), show_progress=False)
        assert summary.failed == 0
    build_board([root / timing for timing in GRIDS], root / "board", set())
    return root / "board", cache


@pytest.fixture(scope="module")
def memo():
    """compute_result, once per distinct cell for this module (the re-runs are real)."""
    done: dict[str, dict] = {}
    calls: list[str] = []

    def rerun(cell, registry, env, digest, guard):
        key = json.dumps(cell.to_json(), sort_keys=True)
        calls.append(key)
        if key not in done:
            done[key] = compute_result(cell, registry, env, digest, guard)
        return copy.deepcopy(done[key])

    rerun.calls = calls
    return rerun


@pytest.fixture
def loaded(board):
    results, bad = load_board(board[0])
    assert not bad and len(results) == 3
    return copy.deepcopy(results)


def verify(results, registry, board, memo, **kw):
    return verify_results(results, registry, cache_dir=board[1], rerun=memo, **kw)


def test_committed_board_verifies_exactly(board, registry, memo):
    """analytic and realistic cells re-run bit-identically on the same machine class."""
    report = verify_leaderboard(board[0], registry=registry, cache_dir=board[1], rerun=memo)
    assert report.ok, report.format_report()
    assert len(report.verified) == 3 and not report.cannot_verify
    assert {v.regime for v in report.verified} == {"exact"}
    assert {json.loads(p.read_text())["cell"]["timing"]["mode"]
            for p in (v.path for v in report.verified)} == {"analytic", "realistic"}
    assert len(report.rerun_seconds) == 3 and all(s > 0 for s in report.rerun_seconds)
    assert "verify: OK" in report.format_report()


def test_cells_carry_the_capacity_figure_and_the_board_the_slack(loaded, board):
    for _, result in loaded:
        m = result["metrics"]
        lo, c, hi = (m["capacity_exit_accuracy_lo"], m["capacity_exit_accuracy"],
                     m["capacity_exit_accuracy_hi"])
        assert 0 <= lo <= c <= hi <= 1
        assert m["capacity_slack"] == pytest.approx(c - m["exit_estimation_accuracy_intended"])
        capacity = result["diagnostics"]["capacity"]
        assert capacity["inputs"] > 0 and capacity["monte_carlo"]["rows"] >= 2 * capacity["inputs"]
        assert c == max(capacity["cross_validated"]["estimate"],
                        capacity["monte_carlo"]["estimate"])
    board_json = json.loads((board[0] / "leaderboard.json").read_text())
    for entry in board_json["defense_ranking"]:
        assert entry["min_slack_attack"] == "exit_steal"
        assert entry["provisional"] == (entry["min_slack"] > 0.05)


def test_a_changed_number_is_a_mismatch_naming_cell_and_field(loaded, registry, board, memo):
    path, result = loaded[1]
    result["metrics"]["exit_agreement"] += 0.01
    report = verify(loaded, registry, board, memo)
    assert not report.ok and len(report.verified) == 2
    (m,) = report.mismatches
    assert (m.path, m.field, m.tolerance) == (path, "metrics.exit_agreement", "exact")
    assert m.got == pytest.approx(m.expected - 0.01)
    text = report.format_report()
    assert str(path) in text and "metrics.exit_agreement" in text and "FAILED" in text


def test_a_field_on_one_side_only_and_a_status_change_are_mismatches(loaded, registry, board,
                                                                     memo):
    (p0, r0), (p1, r1) = loaded[0], loaded[2]
    del r0["metrics"]["fidelity"]
    r1["metrics"]["made_up_metric"] = 0.5

    def failing(cell, registry, env, digest, guard):
        got = memo(cell, registry, env, digest, guard)
        if digest == r1["config_hash"]:
            got.update(status="failed", metrics={}, error={"message": "boom\nmore"})
        return got

    report = verify_results([loaded[0], loaded[2]], registry, cache_dir=board[1], rerun=failing)
    fields = {(m.path, m.field): m for m in report.mismatches}
    assert fields[(p0, "metrics.fidelity")].expected == "<missing>"
    assert fields[(p1, "status")].got == "failed (boom)"
    assert (p1, "metrics.made_up_metric") not in fields  # a failed re-run is one mismatch


def test_other_machine_class_compares_within_tolerance(loaded, registry, board, memo):
    for _, result in loaded:
        result["machine"]["processor"] = "Some Other CPU"
        result["metrics"]["exit_agreement"] += 0.01  # within 0.05 absolute
    loaded[0][1]["metrics"]["fidelity"] -= 0.2  # beyond it
    report = verify(loaded, registry, board, memo)
    assert {v.regime for v in report.verified} == {"cross_machine"}
    assert len(report.verified) == 2
    (m,) = report.mismatches
    assert (m.path, m.field, m.tolerance) == (loaded[0][0], "metrics.fidelity", "abs 0.05")
    assert "2 within tolerance" in report.format_report()


def test_stale_cell_reported_apart_and_not_rerun(loaded, registry, board, memo):
    """A cell from before its attack gained a parameter (as ``patience``, added with early
    stopping) no longer has the hash today's grid gives it; so has an edited one."""
    (path, result), (edited_path, edited) = loaded[0], loaded[1]
    del result["cell"]["attack"]["params"]["patience"]
    old = rebuild_cell(result, registry)  # the cell as a harness without `patience` ran it
    old_attack = replace(old.attack, params_json=json.dumps(result["cell"]["attack"]["params"],
                                                            sort_keys=True))
    result["config_hash"] = config_hash(replace(old, attack=old_attack), registry)
    edited["cell"]["attack"]["params"]["epochs"] = 3  # not what the stored hash covers
    before = len(memo.calls)
    report = verify(loaded, registry, board, memo)
    stale = {s.path: s for s in report.stale}
    assert set(stale) == {path, edited_path}
    assert stale[path].stored_hash == result["config_hash"] and not stale[path].rerun
    assert stale[path].current_hash != stale[path].stored_hash
    assert stale[path].why == "fields now read differently: cell.attack.params.patience"
    assert "edited" in stale[edited_path].why
    assert not report.mismatches and len(report.verified) == 1 and not report.ok
    assert len(memo.calls) - before == 1
    assert "stale (code, versions or protocol changed; counted apart): 2" in report.format_report()


def test_stale_cell_rerun_on_request_after_a_package_upgrade(loaded, registry, board, memo,
                                                             monkeypatch):
    import harness.board.respec as respec
    import harness.io.provenance as provenance
    import harness.run.grid as grid

    real = provenance.package_versions
    for module in (grid, respec):
        monkeypatch.setattr(module, "package_versions", lambda: {**real(), "numpy": "99.0"})
    report = verify(loaded, registry, board, memo, rerun_stale=True)
    assert len(report.stale) == 3 and not report.verified and not report.mismatches
    assert all(s.rerun and not s.mismatches for s in report.stale)
    assert all("numpy" in s.why and "99.0" in s.why for s in report.stale)
    assert "re-run: reproduces" in report.format_report()


def test_a_core_change_marks_cells_stale_and_names_the_core(loaded, registry, board, memo,
                                                            monkeypatch):
    """The harness core's source enters the config hash and the result: a core change
    makes every finished cell stale (never silently "wrong"), named as the cause."""
    import harness.board.respec as respec
    import harness.run.grid as grid

    recorded = {result.get("core_digest") for _, result in loaded}
    assert recorded == {core_source_digest()}  # each cell records the digest it ran under
    for module in (grid, respec):
        monkeypatch.setattr(module, "core_source_digest", lambda: "f" * 64)
    report = verify(loaded, registry, board, memo, rerun_stale=True)
    assert len(report.stale) == 3 and not report.verified
    assert all("harness core source" in s.why and "ffffffffffff" in s.why for s in report.stale)
    assert all(s.rerun and not s.mismatches for s in report.stale)  # it still reproduces


def test_unknown_component_failed_cell_missing_profile_cannot_verify(loaded, registry, board,
                                                                    memo):
    (p0, r0), (p1, r1), (p2, r2) = loaded
    r0["cell"]["attack"]["name"] = "no_such_attack"
    r1.update(status="failed", error={"type": "X", "message": "kaboom\ntrace"}, metrics={})
    r2["cell"]["timing"].update(mode="replay", profile_hash="ab" * 32)
    report = verify(loaded, registry, board, memo)
    reasons = {u.path: u.reason for u in report.cannot_verify}
    assert "no_such_attack" in reasons[p0] and "not registered" in reasons[p0]
    assert "exit_steal" in reasons[p0]  # the registered attacks are listed
    assert "recorded as failed (kaboom)" in reasons[p1]
    assert "abababababab" in reasons[p2] and "profile" in reasons[p2]
    assert report.sampled == 2 and report.ok_cells == 2  # nothing contradicted, but
    assert not report.ok  # cells with numbers that cannot be re-run fail the check
    failed_only = dataclasses.replace(report, cannot_verify=tuple(
        u for u in report.cannot_verify if u.path == p1))
    assert failed_only.ok  # a recorded failure carries no number to contradict


def test_a_cell_whose_secret_verify_lacks_is_rerun_under_a_fresh_secret(loaded, registry,
                                                                       board, monkeypatch):
    monkeypatch.delenv("HARNESS_SECRET", raising=False)
    path, result = loaded[0]
    result["diagnostics"]["isolation"]["secret"] = "secret"
    with secret_env("any", "secret"):  # the hash of the same cell run in secret mode
        result["config_hash"] = config_hash(rebuild_cell(result, registry), registry)
    seen = []

    def rerun(cell, registry, env, digest, guard):
        seen.append((os.environ.get("HARNESS_SECRET"), secret_mode(), env.victim_salt))
        return copy.deepcopy(result)  # as if it reproduced

    (v,) = verify(loaded[:1], registry, board, rerun).verified
    assert v.path == path and v.regime == "fresh_secret" and "fresh secret" in v.why
    ((secret, mode, salt),) = seen
    assert secret and mode == "secret" and salt  # a fresh secret salts the victim too
    assert "HARNESS_SECRET" not in os.environ  # the process's own state is restored
    (v,) = verify(loaded[:1], registry, board, rerun, secrets=SecretPlan(named="given")).verified
    assert v.regime == "exact" and seen[-1][0] == "given"  # the secret it ran with: exact
    got = copy.deepcopy(result)
    got["metrics"]["fidelity"] -= 0.2  # beyond the measured fresh-secret spread (0.06)
    report = verify(loaded[:1], registry, board, lambda *a: copy.deepcopy(got))
    (m,) = report.mismatches
    assert m.field == "metrics.fidelity" and m.tolerance == "abs 0.06"


def test_fresh_secret_tolerances_are_never_tighter_than_cross_machine_or_live():
    for metric in ("exit_agreement", "fidelity", "leakage_bits", "cost_ratio", "queries_used",
                   "a_plugin_metric"):
        fresh, cross = tolerance_for(metric, "fresh_secret"), tolerance_for(metric,
                                                                              "cross_machine")
        live = tolerance_for(metric, "fresh_secret_live")
        assert fresh.abs >= cross.abs and fresh.rel >= cross.rel
        assert live.abs >= tolerance_for(metric, "live").abs and live.abs >= fresh.abs


def test_sample_one_picks_one(loaded, registry, board, memo):
    report = verify(loaded, registry, board, memo, sample=1, seed=3)
    assert report.sampled == 1 and report.ok_cells == 3 and len(report.verified) == 1
    again = verify(loaded, registry, board, memo, sample=1, seed=3)
    assert again.verified[0].path == report.verified[0].path


def test_unloadable_cell_file_cannot_verify(board, tmp_path, registry, memo):
    shutil.copytree(board[0], tmp_path / "b")
    victim = next((tmp_path / "b" / "cells").rglob("*.json"))
    victim.write_text(victim.read_text()[:50])
    report = verify_leaderboard(tmp_path / "b", sample=0, registry=registry, rerun=memo)
    (u,) = report.cannot_verify
    assert u.path == victim and "not loadable" in u.reason
    with pytest.raises(ConfigError, match="no cells/ folder"):
        verify_leaderboard(tmp_path, registry=registry)


def test_rebuilt_cell_has_the_runs_config_hash(loaded, registry):
    for _, result in loaded:
        assert config_hash(rebuild_cell(result, registry), registry) == result["config_hash"]
    bad = copy.deepcopy(loaded[0][1])
    bad["cell"]["defense"]["params"] = {"scale": -1.0}
    with pytest.raises(CannotRebuild, match=r"(jitter|none).*refuses the stored parameters"):
        rebuild_cell(bad, registry)


# --- pure parts: sampling, tolerances, regimes -------------------------------------------

def fake(attack: str, defense: str, i: int) -> tuple[Path, dict]:
    return Path(f"c/{attack}/{defense}/{i}.json"), {
        "components": {"attack": {"name": attack}, "defense": {"name": defense}}}


cells_strategy = st.lists(st.tuples(st.sampled_from("abcde"), st.sampled_from("uvwxyz")),
                          min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(pairs=cells_strategy, sample=st.integers(0, 40), seed=st.integers(0, 2**32 - 1))
def test_sample_is_a_seeded_covering_subset(pairs, sample, seed):
    items = [fake(a, d, i) for i, (a, d) in enumerate(pairs)]
    chosen = select_sample(items, sample, seed)
    assert len(chosen) == min(sample, len(items))
    assert len({p for p, _ in chosen}) == len(chosen) and all(c in items for c in chosen)
    assert chosen == select_sample(list(reversed(items)), sample, seed)
    attacks, defenses = {a for a, _ in pairs}, {d for _, d in pairs}
    with pytest.raises(ConfigError, match="sample=-1"):
        select_sample(items, -1, seed)
    if sample >= len(attacks) + len(defenses):
        assert {r["components"]["attack"]["name"] for _, r in chosen} == attacks
        assert {r["components"]["defense"]["name"] for _, r in chosen} == defenses


@given(a=st.floats(-10, 10), b=st.floats(-10, 10), tol=st.floats(0, 1), rel=st.floats(0, 1))
def test_tolerance_is_symmetric_and_exact_means_equal(a, b, tol, rel):
    t = Tolerance(abs=tol, rel=rel)
    assert t.allows(a, b) == t.allows(b, a)
    assert t.allows(a, a) and EXACT.allows(a, b) == (a == b)
    assert not t.allows(None, a) and t.allows(None, None)


def test_stated_tolerances_and_regimes():
    here = MachineClass("CPU A", 2)
    assert regime_of("realistic", "inproc", "cpu", "cpu", here, here)[0] == "exact"
    assert regime_of("replay", "inproc", "cpu", "cpu", MachineClass("CPU A", 4), here)[0] \
        == "cross_machine"
    assert regime_of("analytic", "inproc", "cuda", "cuda", here, here)[0] == "cross_machine"
    assert regime_of("analytic", "http", "cpu", "cpu", here, here)[0] == "live"
    assert regime_of("live", "inproc", "cpu", "cpu", here, here)[0] == "live"
    assert tolerance_for("exit_agreement", "cross_machine").allows(0.70, 0.749)
    assert not tolerance_for("exit_agreement", "cross_machine").allows(0.70, 0.751)
    assert tolerance_for("leakage_bits", "cross_machine").allows(1.0, 1.09)
    assert tolerance_for("cost_ratio", "cross_machine").allows(1.0, 1.09)
    assert not tolerance_for("cost_ratio", "cross_machine").allows(1.0, 1.2)
    assert not tolerance_for("queries_used", "cross_machine").allows(60, 59)
    assert tolerance_for("latency_overhead_p50", "live").allows(1.0, 1.9)
    assert not tolerance_for("victim_accuracy", "live").allows(0.9, 0.8)
    with pytest.raises(ValueError, match="exact, cross_machine, live"):
        tolerance_for("fidelity", "roughly")


def test_a_mismatch_names_other_victim_weights_as_its_cause():
    def cell(ea: float, weights: str) -> dict:
        return {"status": "ok", "config_hash": "ab" * 32, "metrics": {"exit_agreement": ea},
                "diagnostics": {"victim_weights_hash": weights}}

    same = compare_results(Path("c.json"), cell(0.5, "1" * 64), cell(0.6, "1" * 64), "exact")
    assert [m.field for m in same] == ["metrics.exit_agreement"]
    other = compare_results(Path("c.json"), cell(0.5, "1" * 64), cell(0.6, "2" * 64), "exact")
    assert [m.field for m in other] == ["metrics.exit_agreement",
                                        "diagnostics.victim_weights_hash"]
    assert "other weights" in str(other[1])
    # weights that differ while every metric reproduces are no mismatch at all
    assert compare_results(Path("c.json"), cell(0.5, "1" * 64), cell(0.5, "2" * 64),
                           "cross_machine") == []
