"""Executors: claims, compute-only timeouts, kill-and-resume, two runners on one ``out=``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.io.claims import lock_path, try_claim
from harness.io.results import load_result
from harness.io.signing import trust_for
from harness.plugins.manager import make_plugin_manager
from harness.run.config import parse_overrides
from harness.run.runner import run_grid
from tests.harness.run.executor_helpers import (
    MARK_VAR,
    leftovers,
    marked_processes,
    orphans_of_other_runs,
    result_files,
    runner_summary,
    start_runner,
    wait_until,
)

pytestmark = pytest.mark.integration  # runs cells, workers or subprocesses


def grid(tmp_path: Path, *extra: str) -> list[str]:
    """Keys of a tiny grid; the cells run in the executor's process (``isolation=none``)
    unless a test is about the isolation workers too."""
    return ["victims=tiny_victim", "defenses=none", f"out={tmp_path / 'out'}",
            f"cache_dir={tmp_path / 'cache'}", "isolation=none", "replicas=0", *extra]


@pytest.fixture
def mark(monkeypatch) -> str:
    """A tag in the environment of this test and of every process it starts."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(MARK_VAR, value)
    return value


def test_claim_is_exclusive_released_and_survives_its_holder(tmp_path):
    result = tmp_path / "cells" / "seed0-abc.json"
    first = try_claim(result)
    assert first is not None and lock_path(result).exists()
    assert try_claim(result) is None  # held (even by this process, through another open)
    first.release()
    assert not lock_path(result).exists()
    lock_path(result).write_text("12345\n")  # a stale file of a dead runner blocks nothing
    again = try_claim(result)
    assert again is not None
    again.release()
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from pathlib import Path;"
                               "from harness.io.claims import try_claim;"
                               f"c = try_claim(Path({str(result)!r})); print(c is not None, flush=True);"
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "True"
    assert try_claim(result) is None
    holder.kill()  # the kernel drops a dead process's flock
    holder.wait()
    claim = try_claim(result)
    assert claim is not None
    claim.release()


def test_timeout_is_allowed_with_every_executor_and_ray_address_needs_ray():
    for executor in ("serial", "process", "ray"):
        assert parse_overrides([f"executor={executor}", "timeout=2"]).timeout == 2.0
    assert parse_overrides(["executor=ray", "ray.address=auto"]).ray_address == "auto"
    with pytest.raises(ConfigError, match="setting of executor=ray"):
        parse_overrides(["ray.address=auto"])


def test_ray_missing_fails_before_work_with_install_hint(exec_plugin, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'exitsteal-harness\[ray\]'"):
        run_grid(parse_overrides(grid(tmp_path, "attacks=nap", "executor=ray")),
                 make_plugin_manager(), show_progress=False)
    assert not (tmp_path / "out").exists()


def _check_timeout_counts_compute_only(tmp_path: Path, monkeypatch, *extra: str) -> None:
    """Workers take > 8.5 s to start; a ~1.5 s cell passes timeout=8 (headroom for a loaded
    2-core machine, where the same cell took over 4 s) and a hanging one fails."""
    monkeypatch.setenv("EXEC_TEST_SLOW_IMPORT_S", "8.5")
    monkeypatch.setenv("EXEC_TEST_DRIVER_PID", str(os.getpid()))
    s = parse_overrides(grid(tmp_path, "attacks=nap,hang", "attack.nap.seconds=0.5", "timeout=8",
                             *extra))
    summary = run_grid(s, make_plugin_manager(), show_progress=False)
    by_attack = {r["cell"]["attack"]["name"]: r for r in
                 (load_result(p, trust_for(p)) for p in summary.result_paths)}
    assert by_attack["nap"]["status"] == "ok", by_attack["nap"]["error"]
    assert by_attack["hang"]["status"] == "failed"
    assert "timed out after 8 s of compute" in by_attack["hang"]["error"]["message"]
    assert leftovers(tmp_path / "out") == []


def test_serial_timeout_counts_compute_not_worker_start_up(exec_plugin, tmp_path, monkeypatch):
    """The serial executor enforces timeout= by running each cell in a child process."""
    _check_timeout_counts_compute_only(tmp_path, monkeypatch, "executor=serial")


@pytest.mark.slow
def test_process_timeout_counts_compute_not_worker_start_up(exec_plugin, tmp_path, monkeypatch):
    _check_timeout_counts_compute_only(tmp_path, monkeypatch, "executor=process", "jobs=2")


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_sigkill_mid_grid_then_resume(exec_plugin, tmp_path, mark, executor):
    """SIGKILL the runner once a cell is written: no orphan (isolation workers included), no
    partial file, cells reused."""
    args = grid(tmp_path, "attacks=nap", "attack.nap.seconds=0.5", "seeds=0,1,2,3",
                "isolation=process", f"executor={executor}", "jobs=2")
    proc = start_runner(args)
    out = tmp_path / "out"
    wait_until(lambda: len(result_files(out)) >= 1 or proc.poll() is not None, 180,
               "a finished cell")
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    wait_until(lambda: not marked_processes(mark), 10, "the killed runner's workers to exit")
    finished = [p for p in result_files(out) if load_result(p, trust_for(p)) is not None]
    assert 1 <= len(finished) < 4
    # resume in this process (serially: the point is what the killed run left behind)
    summary = run_grid(parse_overrides([*args[:-2], "executor=serial"]), make_plugin_manager(),
                       show_progress=False)
    assert (summary.reused, summary.ran, summary.failed) == (len(finished), 4 - len(finished), 0)
    assert all(load_result(p, trust_for(p))["status"] == "ok" for p in summary.result_paths)
    assert leftovers(out) == []
    assert orphans_of_other_runs(mark) == []


def test_two_runners_on_one_out_never_run_a_cell_twice(exec_plugin, tmp_path, monkeypatch):
    log = tmp_path / "runs.log"
    monkeypatch.setenv("EXEC_TEST_LOG", str(log))
    args = grid(tmp_path, "attacks=nap", "attack.nap.seconds=0.5", "seeds=0,1,2,3,4,5")
    a, b = start_runner(args), start_runner(args)
    sa, sb = runner_summary(a), runner_summary(b)
    seeds = [line.split()[0] for line in log.read_text().splitlines()]
    assert sorted(seeds) == [str(s) for s in range(6)], seeds  # each cell ran exactly once
    assert sa["ran"] + sb["ran"] == 6 and sa["failed"] == sb["failed"] == 0
    assert sa["ran"] + sa["reused"] + sa["elsewhere"] == 6
    again = run_grid(parse_overrides(args), make_plugin_manager(), show_progress=False)
    assert (again.reused, again.ran) == (6, 0)
    assert leftovers(tmp_path / "out") == []
    assert all(json.loads(p.read_text())["status"] == "ok" for p in again.result_paths)


def test_cell_held_by_another_runner_is_skipped_as_running_elsewhere(exec_plugin, tmp_path):
    s = parse_overrides(grid(tmp_path, "attacks=nap", "attack.nap.seconds=0", "seeds=0,1"))
    first = run_grid(s, make_plugin_manager(), show_progress=False)
    held_path = first.result_paths[1]
    for p in first.result_paths:
        p.unlink()
    claim = try_claim(held_path)  # "another runner" holds seed 1
    try:
        summary = run_grid(s, make_plugin_manager(), show_progress=False)
    finally:
        claim.release()
    assert (summary.ran, summary.elsewhere, summary.failed) == (1, 1, 0)
    assert load_result(first.result_paths[0], trust_for(first.result_paths[0]))["status"] == "ok"
    assert not held_path.exists()
    again = run_grid(s, make_plugin_manager(), show_progress=False)
    assert (again.reused, again.ran, again.elsewhere) == (1, 1, 0)


def test_ray_task_resources_pin_live_cells():
    from dataclasses import replace

    from harness.plugins.registry import load_registry
    from harness.run.executors.ray_executor import LIVE_CPU, _Cluster, _options
    from harness.run.grid import expand_grid

    registry = load_registry()
    cell = expand_grid(parse_overrides(["defenses=none", "attacks=knockoff"]), registry)[0]
    def with_settings(c, **changes):
        return replace(c, settings=replace(c.settings, **changes))

    live = with_settings(cell, timing="live")
    local = _Cluster(None, True, {"CPU": 2.0, LIVE_CPU: 1.0})
    bare = _Cluster(None, False, {"CPU": 8.0, "GPU": 2.0})
    assert _options(cell, local) == ({"num_returns": "streaming", "max_retries": 0, "num_cpus": 1},
                                     False)
    assert _options(live, local)[0]["resources"] == {LIVE_CPU: 1}
    assert _options(live, bare) == (_options(cell, bare)[0], True)  # driver runs them one by one
    assert _options(with_settings(live, device="cuda"), bare)[0]["num_gpus"] == 1
    assert _options(with_settings(cell, device="auto"), bare)[0]["num_gpus"] == 1
    assert "num_gpus" not in _options(with_settings(cell, device="auto"), local)[0]
