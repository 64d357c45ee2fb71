"""The process executor's worker: it adopts the driver's state and dies with the driver."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from harness.isolation.sandbox import worker_context
from harness.run.executors.worker import DriverState
from tests.harness.run.executor_helpers import alive, wait_until


def test_driver_state_is_adopted_whole(tmp_path, monkeypatch):
    """A worker forked from an older fork server gets the driver's environment, path and
    folder of now: variables set since are there, variables removed since are gone."""
    monkeypatch.setenv("HARNESS_TEST_NEW", "1")
    monkeypatch.delenv("HARNESS_TEST_GONE", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    state = DriverState.current()
    assert state.pid == os.getpid()

    monkeypatch.chdir("/")
    monkeypatch.setenv("HARNESS_TEST_GONE", "stale")
    monkeypatch.delenv("HARNESS_TEST_NEW")
    monkeypatch.setattr(sys, "path", ["/nowhere"])
    state.adopt()
    assert os.getcwd() == str(tmp_path)
    assert os.environ.get("HARNESS_TEST_NEW") == "1"
    assert "HARNESS_TEST_GONE" not in os.environ
    assert sys.path[0] == str(tmp_path)


WORKER = textwrap.dedent("""
    import os, sys, time
    from harness.run.executors.worker import watch_driver
    os.setpgid(0, 0)
    watch_driver(int(sys.argv[1]))
    print("watching", flush=True)
    time.sleep(120)
""")


@pytest.mark.parametrize("dead_before_watch", [False, True])
def test_worker_group_dies_with_its_driver(dead_before_watch):
    """The worker's parent is the fork server, not the driver: the watch, not the parent-death
    signal, is what stops it (and its process group) when the driver is killed."""
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    if dead_before_watch:
        driver.kill()
        driver.wait()
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(driver.pid)],
                              stdout=subprocess.PIPE, text=True)
    try:
        if not dead_before_watch:
            assert worker.stdout.readline().strip() == "watching"
            driver.kill()
            driver.wait()
        assert worker.wait(timeout=30) == -9
    finally:
        worker.kill()
        driver.kill()
        driver.wait()
        worker.wait()


def _isolation_worker(conn) -> None:
    conn.send((os.getpgid(0), os.getppid(), os.getpid()))
    conn.close()
    time.sleep(120)


def _cell_worker(conn) -> None:
    """What a process executor's cell worker does: lead a group, start an isolation worker."""
    os.setpgid(0, 0)
    context = worker_context()
    reader, writer = context.Pipe(duplex=False)
    context.Process(target=_isolation_worker, args=(writer,), daemon=True).start()
    writer.close()
    group, parent, pid = reader.recv()
    conn.send({"cell_group": os.getpgid(0), "cell_parent": os.getppid(), "worker_group": group,
               "worker_parent": parent, "worker_pid": pid})
    time.sleep(120)


@pytest.mark.skipif("forkserver" not in mp.get_all_start_methods(), reason="needs a fork server")
def test_cell_worker_starts_its_isolation_workers_from_the_same_fork_server():
    """No second fork server (an interpreter and torch's import per cell): the cell's
    isolation worker is a sibling from the runner's server, in the cell's process group, so
    stopping the cell's group stops it."""
    reader, writer = mp.Pipe(duplex=False)
    cell = worker_context().Process(target=_cell_worker, args=(writer,), daemon=False)
    cell.start()
    writer.close()
    try:
        assert reader.poll(60), "the cell worker did not report"
        seen = reader.recv()
        assert seen["worker_parent"] == seen["cell_parent"]  # the same server forked both
        assert seen["worker_group"] == seen["cell_group"] == cell.pid
        os.killpg(cell.pid, signal.SIGKILL)
        wait_until(lambda: not alive(seen["worker_pid"]), 10, "the isolation worker to die")
    finally:
        cell.kill()
        cell.join()
