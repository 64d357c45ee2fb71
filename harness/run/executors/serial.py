"""``executor=serial``: cells one after another in this process.

With ``timeout=`` each cell instead runs in a child process (the process executor with one
job), because a cell that overruns in this process cannot be stopped safely; start-up of
that child is not counted, so the timeout still limits compute only.
"""

from __future__ import annotations

from dataclasses import replace

from harness.run.executors.base import JobQueue, Result, RunContext, complete
from harness.run.executors.process import run_processes


def run_serial(queue: JobQueue, ctx: RunContext) -> list[Result]:
    """Run the queue's cells in order; return their written results."""
    if ctx.timeout is not None:
        return run_processes(queue, replace(ctx, jobs=1))
    results: list[Result] = []
    try:
        while (job := queue.next()) is not None:
            result = ctx.ops.compute(job.cell, ctx.registry, ctx.env, job.digest, ctx.guard)
            results.append(complete(ctx, queue, job, result))
    finally:
        queue.release_all()
    return results
