"""``executor=process``: each cell in its own spawned process, ``jobs`` at a time.

A crash, a kill or ``timeout=`` fails only that cell. The timeout clock starts when the
worker reports ``started`` (after its interpreter, torch and the plugins are loaded), so
it limits the cell's compute, not start-up. The driver writes every result.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from harness.run.executors.base import Job, JobQueue, Result, RunContext, abort, complete, overdue
from harness.run.executors.worker import process_worker

POLL_S = 0.05


@dataclass
class _Running:
    """A started worker: its job, process, result pipe, and clocks (monotonic seconds)."""

    job: Job
    proc: BaseProcess
    conn: Connection
    spawned: float
    started: float | None = None


def _start(ctx: RunContext, job: Job) -> _Running:
    spawn = mp.get_context("spawn")
    reader, writer = spawn.Pipe(duplex=False)
    # not a daemon: a cell may start processes of its own (isolation); it is killed below
    proc = spawn.Process(target=process_worker, daemon=False,
                         args=(writer, ctx.ops.compute, job.cell, ctx.env, job.digest, os.getpid(),
                               ctx.jobs))
    proc.start()
    writer.close()  # only the child writes; its death then reads as EOF here
    return _Running(job, proc, reader, time.monotonic())


def _stop(run: _Running, grace: float = 0.0) -> None:
    """Reap the worker (after up to ``grace`` s), then kill its process group, reap it.

    Killing the group also ends anything the cell started and left behind.
    """
    if grace:
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


def run_processes(queue: JobQueue, ctx: RunContext) -> list[Result]:
    """Run the queue's cells in spawned workers; return their written results as they finish."""
    running: dict[Connection, _Running] = {}
    results: list[Result] = []
    try:
        while True:
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
                _stop(run, grace=5.0)
                wall = time.monotonic() - (run.started or run.spawned)
                if got is None:
                    results.append(abort(ctx, queue, run.job, f"cell process exited with code "
                                         f"{run.proc.exitcode} before sending its result", wall))
                else:
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
        queue.release_all()
    return results
