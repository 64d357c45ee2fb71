"""What every executor shares: the jobs, the cell operations it calls, and claiming.

The runner hands an executor a list of :class:`Job` and a :class:`CellOps`. The executor
claims each job just before it starts it (:class:`JobQueue`), runs the cell somewhere
(this process, a child process, a Ray worker), and always writes the result here, in
the driver, through ``ops.write`` - a worker never writes into ``out=``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cell.spec import CellEnvironment, CellSpec
from harness.io.claims import Claim, remove_stale_temporaries, try_claim
from harness.io.results import previous_result
from harness.io.signing import FolderTrust
from harness.plugins.registry import Registry
from harness.run.interrupts import InterruptGuard

Result = dict[str, Any]
ComputeFn = Callable[[CellSpec, Registry, CellEnvironment, str, InterruptGuard | None], Result]
"""``compute(cell, registry, env, digest, guard) -> result``; never raises for a plugin's fault.
Must be a module-level function: process and Ray workers receive it pickled."""

STARTUP_LIMIT_S = 300.0
"""How long a worker may take to start (interpreter, imports, plugins) when ``timeout=``
is set. Start-up is not part of a cell's compute time, but a worker that hangs while
importing a plugin must not hang the grid."""


@dataclass(frozen=True)
class Job:
    """One cell to run: its spec, config hash and result path."""

    cell: CellSpec
    digest: str
    path: Path


@dataclass(frozen=True)
class CellOps:
    """The runner's cell operations, passed in so executors do not import the runner.

    ``compute`` runs a cell and returns its result (not written); ``write`` writes a result
    atomically (returning a ``failed`` one if it cannot); ``abort`` builds the ``failed``
    result of a cell the executor had to stop; ``finish`` calls the hooks and reports.
    """

    compute: ComputeFn
    write: Callable[[Path, Result, CellSpec, Registry], Result]
    abort: Callable[[CellSpec, Registry, str, str, float], Result]
    finish: Callable[[CellSpec, Path, Result], Result]


@dataclass(frozen=True)
class RunContext:
    """Everything an executor needs besides its jobs."""

    registry: Registry
    env: CellEnvironment
    ops: CellOps
    guard: InterruptGuard
    jobs: int
    timeout: float | None
    note: Callable[[str], None]


@dataclass
class JobQueue:
    """Jobs not started yet; :meth:`next` claims the next one this runner may run.

    A job another runner holds is skipped ("running elsewhere"); one that another runner
    finished since the grid was planned is skipped as reused. Both are reported through
    ``skipped`` and counted here.
    """

    pending: list[Job]
    skipped: Callable[[Job, str], None]
    trust: FolderTrust
    """The results folder's signatures: another runner's cell is reused only when trusted."""
    elsewhere: int = 0
    finished_elsewhere: int = 0
    claims: dict[Path, Claim] = field(default_factory=dict)
    written_after: float | None = None
    """With ``--force``: reuse only results written after this time (``time.time()``), so
    the finished cells being forced are not mistaken for another runner's work."""

    def _fresh(self, path: Path) -> bool:
        if self.written_after is None:
            return True
        try:
            return path.stat().st_mtime >= self.written_after
        except OSError:
            return False

    def next(self) -> Job | None:
        while self.pending:
            job = self.pending.pop(0)
            claim = try_claim(job.path)
            if claim is None:
                self.elsewhere += 1
                self.skipped(job, "running elsewhere (another runner holds it); skipped")
                continue
            old = previous_result(job.path, self.trust)[0]  # the planner already reported bad files
            if (old is not None and old["status"] == "ok" and old["config_hash"] == job.digest
                    and self._fresh(job.path)):
                claim.release()
                self.finished_elsewhere += 1
                self.skipped(job, "finished by another runner meanwhile (reused)")
                continue
            remove_stale_temporaries(job.path)
            self.claims[job.path] = claim
            return job
        return None

    def done(self, job: Job) -> None:
        """Release the claim of a job whose result is written and announced."""
        claim = self.claims.pop(job.path, None)
        if claim is not None:
            claim.release()

    def release_all(self) -> None:
        """Release every claim still held (the grid stops early)."""
        for path in list(self.claims):
            self.claims.pop(path).release()


def overdue(timeout: float | None, submitted: float, started: float | None, now: float,
            what: str) -> str | None:
    """Why a running cell must be stopped now (monotonic seconds), or None.

    Compute is timed from ``started`` (the worker's signal); before it, only the start-up
    limit applies. ``what`` names the worker for the message.
    """
    if timeout is None:
        return None
    if started is None:
        limit = max(STARTUP_LIMIT_S, timeout)
        if now - submitted <= limit:
            return None
        return (f"the cell's {what} did not start within {limit:g} s (interpreter, imports "
                "and plugins); check for a plugin that hangs on import or a busy cluster")
    if now - started > timeout:
        return (f"cell timed out after {timeout:g} s of compute (worker start-up not counted); "
                "raise timeout= if the cell needs longer")
    return None


def complete(ctx: RunContext, queue: JobQueue, job: Job, result: Result) -> Result:
    """Write a result (driver side), announce it, then release the cell's claim."""
    try:
        written = ctx.ops.write(job.path, result, job.cell, ctx.registry)
        return ctx.ops.finish(job.cell, job.path, written)
    finally:
        queue.done(job)


def abort(ctx: RunContext, queue: JobQueue, job: Job, message: str, wall: float) -> Result:
    """Record a cell the executor had to stop (timeout, dead worker) as ``failed``."""
    result = ctx.ops.abort(job.cell, ctx.registry, job.digest, message, wall)
    return complete(ctx, queue, job, result)
