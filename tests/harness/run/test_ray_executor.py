"""executor=ray on a local Ray instance: results, timeout, a killed worker, resume."""

from __future__ import annotations

import os
import signal
import threading
import uuid

import pytest

from harness.io.results import load_result
from harness.io.signing import trust_for
from harness.plugins.manager import make_plugin_manager
from harness.run.config import parse_overrides
from harness.run.runner import run_grid
from tests.harness.run.executor_helpers import (
    MARK_VAR,
    leftovers,
    marked_processes,
    ray_worker_of,
    wait_until,
)

pytestmark = pytest.mark.integration  # runs cells, workers or subprocesses

pytest.importorskip("ray", reason="executor=ray needs the ray extra (make test installs it)")


def _kill_worker_of_seed(log, seed: str, stop: threading.Event, killed: list[int]) -> None:
    """Watch the nap attack's log; SIGKILL the Ray worker that runs ``seed``."""
    while not stop.is_set():
        lines = log.read_text().splitlines() if log.exists() else []
        for line in lines:
            cell_seed, pid = line.split()
            if cell_seed == seed:
                worker = ray_worker_of(int(pid))
                os.kill(worker, signal.SIGKILL)
                killed.append(worker)
                return
        stop.wait(0.05)


def test_ray_runs_cells_times_out_records_killed_worker_and_resumes(exec_plugin, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setenv(MARK_VAR, mark := uuid.uuid4().hex)
    log = tmp_path / "runs.log"
    monkeypatch.setenv("EXEC_TEST_LOG", str(log))
    base = ["victims=tiny_victim", "defenses=none", f"out={tmp_path / 'out'}",
            f"cache_dir={tmp_path / 'cache'}", "attack.nap.seconds=1", "seeds=0,1",
            "isolation=none", "replicas=0"]
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=_kill_worker_of_seed, args=(log, "1", stop, killed))
    watcher.start()
    try:
        summary = run_grid(parse_overrides([*base, "attacks=nap,hang", "executor=ray", "jobs=2",
                                            "timeout=15"]), make_plugin_manager(), show_progress=False)
    finally:
        stop.set()
        watcher.join()
    assert killed, "the watcher never saw seed 1 start"
    results = {(r["cell"]["attack"]["name"], r["seed"]): r for r in
                 (load_result(p, trust_for(p)) for p in summary.result_paths)}
    assert results["nap", 0]["status"] == "ok"
    assert results["nap", 1]["status"] == "failed"
    assert "Ray task failed" in results["nap", 1]["error"]["message"]
    for seed in (0, 1):
        assert "timed out after 15 s of compute" in results["hang", seed]["error"]["message"]
    assert leftovers(tmp_path / "out") == []
    # the driver stopped its local instance: no Ray process of this test is left
    wait_until(lambda: not marked_processes(mark), 60, "the Ray instance's processes to exit")

    # resume (serially, in this process: reuse does not depend on the executor)
    again = run_grid(parse_overrides([*base, "attacks=nap"]), make_plugin_manager(),
                     show_progress=False)
    assert (again.reused, again.ran, again.failed) == (1, 1, 0)
    assert all(load_result(p, trust_for(p))["status"] == "ok" for p in again.result_paths)
    assert leftovers(tmp_path / "out") == []
