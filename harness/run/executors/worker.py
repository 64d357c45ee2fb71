"""The worker side of the process executor: die with the parent, say when compute starts.

A worker is a spawned interpreter. It first makes the kernel kill it if its parent dies
(so a runner killed with SIGKILL leaves no orphan that goes on and writes its cell), then
imports the plugins and builds the registry, then tells the driver ``started`` - only
from then on does ``timeout=`` count - and finally sends the result. The driver writes it.
"""

from __future__ import annotations

import os
import signal
import time
from multiprocessing.connection import Connection

import torch

from harness.cell.spec import CellEnvironment, CellSpec
from harness.isolation.plugin_host import evaluator_registry
from harness.isolation.sandbox import set_parent_death_signal, warm_up
from harness.plugins.manager import make_plugin_manager
from harness.run.executors.base import ComputeFn


def die_with_parent(parent_pid: int) -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; exit now if it already has.

    Returns False where ``prctl`` is not available (other systems), where workers only
    stop when their parent stops them.
    """
    if not set_parent_death_signal():
        return False
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    return True


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
                   digest: str, parent_pid: int, workers: int) -> None:
    """Entry point of one cell's worker process (spawned by the process executor).

    The worker leads its own process group, so stopping it (timeout, end of grid) also
    stops any process the cell started.
    """
    die_with_parent(parent_pid)
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
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
