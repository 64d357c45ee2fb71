"""The process executor's worker: it adopts the driver's state and dies with the driver."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from harness.run.executors.worker import DriverState


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
