"""``executor=ray``: each cell is a Ray task; the driver writes every result.

Ray is an optional extra (``pip install 'exitsteal-harness[ray]'``) imported only here,
only when this executor runs. Without ``ray.address=`` a local instance is started with
``jobs`` CPUs and stopped afterwards; with it the grid joins that cluster (``auto`` or
``HOST:PORT``, as ``ray.init`` takes them).

Each task declares its resources: ``num_cpus=1``, or ``num_gpus=1`` when the cell runs on
CUDA, which already gives it a GPU of its own. A live-timing CPU cell also takes one unit
of the custom resource ``harness_live_cpu`` (one per node on a local instance), so live
cells never share a node's CPU; on a cluster without that resource the driver runs live
CPU cells one at a time. A task is a streaming
generator: it yields ``started`` once the plugins are loaded (the ``timeout=`` clock
starts there) and then the result. Tasks are not retried: a cell whose worker dies is
recorded as failed and runs again on resume.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harness.cell.spec import CellEnvironment, CellSpec
from harness.errors import ConfigError
from harness.isolation.plugin_host import evaluator_registry
from harness.isolation.sandbox import warm_up
from harness.plugins.manager import make_plugin_manager
from harness.run.executors.base import (
    ComputeFn,
    Job,
    JobQueue,
    Result,
    RunContext,
    abort,
    complete,
    overdue,
)

POLL_S = 0.1
INSTALL_HINT = ("executor=ray needs Ray, an optional extra: pip install 'exitsteal-harness[ray]' "
                "(in a checkout: pip install -e '.[ray]'), or choose executor=process")


def require_ray() -> None:
    """Fail before any work, saying how to install Ray, when it is not installed."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(INSTALL_HINT)


def _import_ray() -> Any:
    require_ray()
    import ray  # an optional extra: imported only when executor=ray runs

    return ray


LIVE_CPU = "harness_live_cpu"
"""Custom resource pinning live-timing CPU cells one per node (GPU cells own their GPU)."""


def ray_cell_task(compute: ComputeFn, cell: CellSpec, env: CellEnvironment,
                  digest: str) -> Iterator[tuple[str, Any]]:
    """The body of one cell's Ray task: ``("started", pid)``, then ``("result", result)``."""
    registry = evaluator_registry(make_plugin_manager(), (env.out, env.cache_dir))
    if cell.settings.isolation == "process":
        warm_up()  # the fork server's preload is start-up, not the cell's compute
    yield "started", os.getpid()
    yield "result", compute(cell, registry, env, digest, None)


@dataclass
class _Running:
    job: Job
    gen: Any
    submitted: float
    started: float | None = None
    live: bool = False


@dataclass(frozen=True)
class _Cluster:
    """The Ray module, whether this run started the instance, and its resources."""

    ray: Any
    owned: bool
    resources: dict[str, float]


def _connect(address: str | None, jobs: int, note) -> _Cluster:
    ray = _import_ray()
    owned = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False,
                     resources={LIVE_CPU: 1})
            owned = True
    resources = dict(ray.cluster_resources())
    note(f"ray: {'started a local instance' if owned else 'joined ' + (address or 'the running instance')}"
         f" ({resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU)")
    return _Cluster(ray, owned, resources)


def _options(cell: CellSpec, cluster: _Cluster) -> tuple[dict[str, Any], bool]:
    """Ray task options of a cell, and whether the driver must serialise it (live, no resource)."""
    device = cell.settings.device
    gpu = device == "cuda" or (device == "auto" and cluster.resources.get("GPU", 0) > 0)
    options: dict[str, Any] = {"num_returns": "streaming", "max_retries": 0, "num_cpus": 1}
    if gpu:
        options["num_gpus"] = 1  # a whole GPU: live GPU cells are pinned one per device
        return options, False
    if cell.settings.timing != "live":
        return options, False
    if cluster.resources.get(LIVE_CPU, 0) > 0:
        options["resources"] = {LIVE_CPU: 1}
        return options, False
    return options, True


def _next_item(cluster: _Cluster, run: _Running) -> tuple[str, Any] | BaseException:
    try:
        return cluster.ray.get(next(run.gen))
    except StopIteration:
        return RuntimeError("the Ray task ended without a result")
    except Exception as exc:  # ray.exceptions.RayError subclasses: dead worker, lost node
        return exc


def run_ray(queue: JobQueue, ctx: RunContext, address: str | None) -> list[Result]:
    """Run the queue's cells as Ray tasks (``ctx.jobs`` in flight); the driver writes results."""
    cluster = _connect(address, ctx.jobs, ctx.note)
    ray = cluster.ray
    task = ray.remote(ray_cell_task)
    compute_ref = ray.put(ctx.ops.compute)
    env_ref = ray.put(ctx.env)
    running: list[_Running] = []
    results: list[Result] = []
    held: list[Job] = []  # live cells waiting for the only live slot (no custom resource)

    def finish(run: _Running, outcome: tuple[str, Any] | BaseException | str) -> None:
        running.remove(run)
        wall = time.monotonic() - (run.started or run.submitted)
        if isinstance(outcome, str):
            ray.cancel(run.gen, force=True)
            results.append(abort(ctx, queue, run.job, outcome, wall))
        elif isinstance(outcome, BaseException):
            message = str(outcome).strip().splitlines()[0] if str(outcome).strip() else ""
            results.append(abort(ctx, queue, run.job, f"the cell's Ray task failed: "
                                 f"{type(outcome).__name__}: {message}"[:2000], wall))
        else:
            results.append(complete(ctx, queue, run.job, outcome[1]))

    try:
        while True:
            while len(running) < ctx.jobs:
                live_busy = any(r.live for r in running)
                job = held.pop(0) if held and not live_busy else queue.next()
                if job is None:
                    break
                options, serialise = _options(job.cell, cluster)
                if serialise and live_busy:
                    held.append(job)
                    continue
                gen = task.options(**options).remote(compute_ref, job.cell, env_ref, job.digest)
                running.append(_Running(job, gen, time.monotonic(), live=serialise))
            if not running:
                if held:
                    continue
                break
            ready, _ = ray.wait([r.gen for r in running], num_returns=len(running), timeout=POLL_S)
            ready_ids = {id(g) for g in ready}
            for run in [r for r in running if id(r.gen) in ready_ids]:
                item = _next_item(cluster, run)
                if isinstance(item, tuple) and item[0] == "started":
                    run.started = time.monotonic()
                else:
                    finish(run, item)
            now = time.monotonic()
            for run in list(running):
                reason = overdue(ctx.timeout, run.submitted, run.started, now, "Ray task")
                if reason is not None:
                    finish(run, reason)
    finally:
        for run in running:
            ray.cancel(run.gen, force=True)
        queue.release_all()
        if cluster.owned:
            ray.shutdown()
    return results
