"""``executor=process``: each cell in its own process, ``jobs`` at a time.

Workers fork from the fork server that also starts the isolation workers (it holds
modules only: torch, the harness, the built-in plugins'), so a cell no longer pays an
interpreter's start and torch's import. A crash, a kill or ``timeout=`` fails only that
cell. The timeout clock starts when the worker reports ``started`` (after the plugins
are loaded), so it limits the cell's compute, not start-up. The driver writes every
result, and reaps a finished worker without waiting for it: the next cell starts at once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from harness.isolation.sandbox import worker_context
from harness.run.executors.base import Job, JobQueue, Result, RunContext, abort, complete, overdue
from harness.run.executors.worker import DriverState, process_worker

POLL_S = 0.05
EXIT_GRACE_S = 5.0
"""How long a worker that sent its result may take to exit before its group is killed."""


@dataclass
class _Running:
    """A started worker: its job, process, result pipe, and clocks (monotonic seconds)."""

    job: Job
    proc: BaseProcess
    conn: Connection
    spawned: float
    started: float | None = None
    reap_by: float | None = None


def _start(ctx: RunContext, job: Job) -> _Running:
    context = worker_context()
    reader, writer = mp.Pipe(duplex=False)
    # not a daemon: a cell may start processes of its own (isolation); it is killed below
    proc = context.Process(target=process_worker, daemon=False,
                           args=(writer, ctx.ops.compute, job.cell, ctx.env, job.digest,
                                 DriverState.current(), ctx.jobs))
    proc.start()
    writer.close()  # only the child writes; its death then reads as EOF here
    return _Running(job, proc, reader, time.monotonic())


def _stop(run: _Running, grace: float = 0.0) -> None:
    """Reap the worker (after up to ``grace`` s), then kill its process group, reap it.

    Killing the group also ends anything the cell started and left behind.
    """
    if grace > 0:
        run.proc.join(grace)
    try:
        os.killpg(run.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # group gone, or not its own leader yet
        if run.proc.is_alive():
            run.proc.kill()
    run.proc.join()
    run.conn.close()


def _receive(run: _Running) -> Result | str | None:
    """The result, ``"started"``, or None once the worker is gone without a result."""
    try:
        kind, payload = run.conn.recv()
    except (EOFError, OSError):
        return None
    return payload if kind == "result" else "started"


def _reap(exiting: list[_Running], now: float) -> list[_Running]:
    """Stop the finished workers that have exited or used up their grace; return the rest."""
    waiting = []
    for run in exiting:
        if run.proc.exitcode is not None or now >= (run.reap_by or now):
            _stop(run)
        else:
            waiting.append(run)
    return waiting


def run_processes(queue: JobQueue, ctx: RunContext) -> list[Result]:
    """Run the queue's cells in forked workers; return their written results as they finish."""
    running: dict[Connection, _Running] = {}
    exiting: list[_Running] = []  # sent their result, not yet reaped
    results: list[Result] = []
    try:
        while True:
            exiting = _reap(exiting, time.monotonic())
            while len(running) < ctx.jobs and (job := queue.next()) is not None:
                run = _start(ctx, job)
                running[run.conn] = run
            if not running:
                break
            for conn in wait(list(running), timeout=POLL_S):
                run = running[conn]
                got = _receive(run)
                if got == "started":
                    run.started = time.monotonic()
                    continue
                del running[conn]
                now = time.monotonic()
                wall = now - (run.started or run.spawned)
                if got is None:
                    _stop(run, grace=EXIT_GRACE_S)
                    results.append(abort(ctx, queue, run.job, f"cell process exited with code "
                                         f"{run.proc.exitcode} before sending its result", wall))
                else:
                    run.reap_by = now + EXIT_GRACE_S
                    exiting.append(run)
                    results.append(complete(ctx, queue, run.job, got))
            now = time.monotonic()
            for conn, run in list(running.items()):
                reason = overdue(ctx.timeout, run.spawned, run.started, now, "worker process")
                if reason is not None:
                    del running[conn]
                    _stop(run)
                    results.append(abort(ctx, queue, run.job, reason, now - (run.started or run.spawned)))
    finally:
        for run in running.values():
            _stop(run)
        for run in exiting:
            _stop(run, grace=(run.reap_by or 0.0) - time.monotonic())
        queue.release_all()
    return results
