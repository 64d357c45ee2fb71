"""The worker side of the process executor: die with the driver, say when compute starts.

A worker is forked from the evaluator's fork server (:func:`harness.isolation.sandbox.worker_context`),
whose process imported torch, the harness and the built-in plugins' modules once, so a
cell starts in milliseconds instead of seconds. It first leads its own process group and
watches the driver (so a runner killed with SIGKILL leaves no orphan that goes on), adopts
the driver's environment, path and folder (the fork server's are those of its own start),
imports the plugins and builds the registry, then tells the driver ``started`` - only
from then on does ``timeout=`` count - and finally sends the result. The driver writes it.
"""

from __future__ import annotations

import importlib
import os
import select
import signal
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import torch

from harness.cell.spec import CellEnvironment, CellSpec
from harness.isolation.plugin_host import evaluator_registry
from harness.isolation.sandbox import warm_up
from harness.plugins.manager import make_plugin_manager
from harness.run.executors.base import ComputeFn

WATCH_POLL_S = 0.5
"""How often a worker checks its driver where ``pidfd_open`` is not available."""


@dataclass(frozen=True)
class DriverState:
    """What a spawned worker would have inherited from the driver: its pid, environment,
    import path and working folder. A forked worker adopts them before it imports a plugin
    (the fork server holds those of the moment it started, and never the secret)."""

    pid: int
    environ: tuple[tuple[str, str], ...]
    sys_path: tuple[str, ...]
    cwd: str

    @classmethod
    def current(cls) -> DriverState:
        return cls(os.getpid(), tuple(os.environ.items()), tuple(sys.path), os.getcwd())

    def adopt(self) -> None:
        os.chdir(self.cwd)
        os.environ.clear()
        os.environ.update(dict(self.environ))
        sys.path[:] = list(self.sys_path)
        importlib.invalidate_caches()


def _wait_for_exit(pid: int) -> None:
    """Return once process ``pid`` has exited (at once if it already has)."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd (other systems, old kernels): poll
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:
                pass
            time.sleep(WATCH_POLL_S)
    try:
        select.select([handle], [], [])
    finally:
        os.close(handle)


def watch_driver(pid: int) -> threading.Thread:
    """Kill this worker's process group (the cell and every process it started) as soon as
    the driver ``pid`` exits. Call after ``os.setpgid(0, 0)``.

    The worker's parent is the fork server, which outlives a killed driver while any
    worker holds its pipe, so the parent-death signal alone would not stop an orphan.
    """
    def watch() -> None:
        _wait_for_exit(pid)
        os.killpg(0, signal.SIGKILL)

    thread = threading.Thread(target=watch, name="harness-driver-watch", daemon=True)
    thread.start()
    return thread


def share_cpus(workers: int) -> int:
    """Give this process's torch its share of the CPUs when ``workers`` cells run at once.

    Without it each worker starts one OpenMP thread per core, and on a small machine the
    oversubscribed threads spin against each other (a tiny cell ran 10x slower with two
    workers on two cores). Returns the thread count set.
    """
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    torch.set_num_threads(threads)
    return threads


def process_worker(conn: Connection, compute: ComputeFn, cell: CellSpec, env: CellEnvironment,
                   digest: str, driver: DriverState, workers: int) -> None:
    """Entry point of one cell's worker process (started by the process executor).

    The worker leads its own process group, so stopping it (timeout, end of grid, the
    driver's death) also stops any process the cell started.
    """
    os.setpgid(0, 0)
    watch_driver(driver.pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops us
    driver.adopt()
    share_cpus(workers)
    registry = evaluator_registry(make_plugin_manager(), (env.out, env.cache_dir))
    if cell.settings.isolation == "process":
        warm_up()  # the fork server's preload is start-up, not the cell's compute
    try:
        conn.send(("started", time.time()))
    except (BrokenPipeError, EOFError, OSError):
        return  # the runner stopped (Ctrl-C) while this worker was starting: nothing to do
    result = compute(cell, registry, env, digest, None)
    conn.send(("result", result))
    conn.close()
