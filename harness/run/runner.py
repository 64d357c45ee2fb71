"""Grid runner: resume, atomic per-cell results, failure isolation, serial/process executors.

Each cell's result is ``OUT/cells/<victim>/<defense>/<attack>/seed<S>-<hash16>.json``.
A re-run skips cells whose file is valid, has status ``ok`` and the same config hash;
corrupt files and failed cells are run again. A cell whose plugin raises anything
(``SystemExit`` and a plugin's ``KeyboardInterrupt`` included), whose
``harness_cell_finished`` hook raises, or whose result cannot be written is recorded
as ``failed`` with its error (the console prints the one-line reason) and the grid goes
on. Ctrl-C stops the grid cleanly: finished cells are kept and a re-run resumes.

After the cells, each victim's replica agreement (:mod:`harness.run.replicas`,
``replicas=N``) is computed once per run dir, here, and reused on resume.

Where cells run is the executor's business (:mod:`harness.run.executors`: ``serial``,
``process``, ``ray``); this process always writes the results. Each cell is claimed with
a lock before it runs, so two runners on one ``out=`` never run a cell twice.
``timeout=`` limits a cell's compute (not worker start-up) in every executor.
"""

from __future__ import annotations

import copy
import functools
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.cell.driver import prepare_victim, run_cell
from harness.cell.local import LocalRoles
from harness.cell.roles import Roles
from harness.cell.spec import CellEnvironment, CellSpec
from harness.errors import ComponentFailure, ConfigError, GridInterrupted
from harness.io.integrity import seal
from harness.io.provenance import git_commit, machine_info, package_versions
from harness.io.results import check_out_dir, previous_result
from harness.io.schema import SCHEMA_VERSION
from harness.io.secret import run_secret, victim_salt
from harness.io.signing import FolderTrust, RunManifest, open_run_manifest
from harness.isolation.plugin_host import evaluator_registry
from harness.isolation.roles import IsolatedRoles
from harness.isolation.sandbox import check_apart
from harness.plugins.manager import HarnessPluginManager, HarnessPluginWarning, make_plugin_manager
from harness.plugins.registry import Registry
from harness.plugins.source import core_source_digest
from harness.run.config import RunSpec
from harness.run.executors import CellOps, Job, JobQueue, RunContext, run_processes, run_serial
from harness.run.executors.ray_executor import require_ray, run_ray
from harness.run.grid import available_victims, config_hash, expand_grid
from harness.run.interrupts import InterruptGuard
from harness.run.progress import Progress
from harness.run.replicas import grid_replica_agreement
from harness.serving.devices import resolve_device
from harness.stages import PROTOCOL_VERSION
from harness.timing.profiles import LatencyProfile
from harness.version import __version__


@dataclass(frozen=True)
class GridSummary:
    """What a grid run did. ``elsewhere``: cells skipped because another runner held them."""

    out: Path
    total: int
    reused: int
    ran: int
    failed: int
    result_paths: tuple[Path, ...]
    elsewhere: int = 0
    replica_files: tuple[Path, ...] = ()
    """The replica-agreement files of the grid's victims (none with ``replicas=0``)."""


def cell_path(out: Path, cell: CellSpec, digest: str) -> Path:
    return (out / "cells" / cell.victim.name / cell.defense.name / cell.attack.name
            / f"seed{cell.seed}-{digest[:16]}.json")


def _component_info(registry: Registry, cell: CellSpec) -> dict[str, Any]:
    info = {k: {"name": getattr(cell, k).name, "params": getattr(cell, k).params,
                "label": getattr(cell, k).display,
                **registry.get(k, getattr(cell, k).name).origin()}
            for k in ("victim", "defense", "attack")}
    info["defense"]["stages"] = registry.get("defense", cell.defense.name).stages()
    return info


ROLES: dict[str, Roles] = {"process": IsolatedRoles(), "none": LocalRoles()}
"""Where a cell's server and attacker run, by ``isolation=`` mode."""


def build_result(cell: CellSpec, registry: Registry, digest: str, status: str,
                 metrics: dict, diagnostics: dict, error: dict | None, wall: float,
                 device: str) -> dict[str, Any]:
    timing = cell.settings.to_json()["timing"]
    return {
        "schema_version": SCHEMA_VERSION, "harness_version": __version__,
        "protocol_version": PROTOCOL_VERSION,
        "config_hash": digest, "cell": cell.to_json(),
        "components": _component_info(registry, cell), "seed": cell.seed, "timing": timing,
        "device": device, "machine": asdict(machine_info(device)), "packages": package_versions(),
        "git_commit": git_commit(), "core_digest": core_source_digest(),
        "status": status, "error": error,
        "metrics": metrics, "diagnostics": diagnostics, "wall_time_s": round(wall, 4),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _error_info(exc: BaseException, cell: CellSpec) -> dict[str, Any]:
    component = exc.component if isinstance(exc, ComponentFailure) else None
    here = "".join(traceback.format_exception(exc))
    remote = getattr(exc, "remote_traceback", "")  # an isolated attack's own traceback
    return {"type": type(exc).__name__, "message": (str(exc) or type(exc).__name__)[:4000],
            "component": component,
            "traceback": (f"{here}\nin the attack's process:\n{remote}" if remote
                          else here)[-8000:]}


def one_line_reason(result: dict[str, Any], limit: int = 240) -> str:
    """The first line of a failed result's error, for the console."""
    error = result.get("error") or {}
    text = (error.get("message") or error.get("type") or "unknown error").strip()
    line = text.splitlines()[0] if text else "unknown error"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def write_result(path: Path, result: dict[str, Any], cell: CellSpec, registry: Registry,
                 *, manifest: RunManifest) -> dict[str, Any]:
    """Seal, sign and write ``result`` atomically and list it in the run's ``manifest``; if
    that fails, return a ``failed`` result (not written)."""
    try:
        return manifest.write_signed(path, seal(result))
    except (OSError, TypeError, ValueError) as exc:
        error = {"type": "ResultWriteError", "component": None,
                 "message": f"{type(exc).__name__}: {exc} while writing the result; it was "
                            f"not saved ({path}) and the cell will run again next time"}
        return build_result(cell, registry, result["config_hash"], "failed", {}, {}, error,
                            result["wall_time_s"], result["device"])


def compute_result(cell: CellSpec, registry: Registry, env: CellEnvironment, digest: str,
                   guard: InterruptGuard | None = None) -> dict[str, Any]:
    """Run a cell and return its result (``failed`` with the error if it raises); not written.

    Anything a plugin raises fails only this cell; the user's Ctrl-C propagates. Workers
    call this (it is pickled to them by reference) and send the result to the driver.
    """
    start = time.perf_counter()
    device = cell.settings.device
    try:
        device = resolve_device(device)
        metrics, diagnostics = run_cell(cell, registry, env, ROLES[cell.settings.isolation])
        return build_result(cell, registry, digest, "ok", metrics, diagnostics, None,
                            time.perf_counter() - start, device)
    except BaseException as exc:
        if guard is not None and guard.is_real(exc):
            raise
        return build_result(cell, registry, digest, "failed", {}, {}, _error_info(exc, cell),
                            time.perf_counter() - start, device)


def aborted_result(cell: CellSpec, registry: Registry, digest: str, message: str,
                   wall: float) -> dict[str, Any]:
    """The ``failed`` result of a cell an executor stopped (timeout, dead worker)."""
    error = {"type": "CellAborted", "message": message, "component": None}
    return build_result(cell, registry, digest, "failed", {}, {}, error, wall,
                        cell.settings.device)


def notify_finished(pm: HarnessPluginManager, result: dict[str, Any], cell: CellSpec,
                    registry: Registry, path: Path, guard: InterruptGuard,
                    manifest: RunManifest) -> dict[str, Any]:
    """Call every ``harness_cell_finished``; a hook that raises fails the cell, naming its plugin.

    Each hook gets its own copy of the result. If one raises on an ``ok`` result, the
    cell is rewritten as ``failed`` (so it runs again next time) naming the plugin and
    its distribution; on an already failed result the hook's error is only warned about.
    """
    for impl in pm.hook.harness_cell_finished.get_hookimpls():
        try:
            impl.function(**{a: copy.deepcopy(result) for a in impl.argnames})
        except BaseException as exc:
            if guard.is_real(exc):
                raise
            dist, version = pm.distribution_of(impl.plugin_name)
            message = (f"plugin {impl.plugin_name!r} (distribution {dist} {version}): "
                       f"harness_cell_finished raised {type(exc).__name__}: {exc}; the cell is "
                       f"recorded as failed. Fix the plugin or set "
                       f"HARNESS_DISABLE_PLUGINS={impl.plugin_name}")
            if result["status"] != "ok":
                warnings.warn(message, HarnessPluginWarning, stacklevel=2)
                continue
            error = {"type": "PluginHookError", "message": message[:4000],
                     "component": f"plugin:{impl.plugin_name}",
                     "traceback": "".join(traceback.format_exception(exc))[-8000:]}
            failed = build_result(cell, registry, result["config_hash"], "failed", {}, {}, error,
                                  result["wall_time_s"], result["device"])
            return write_result(path, failed, cell, registry, manifest=manifest)
    return result


def _step(progress: Progress, cell: CellSpec, result: dict[str, Any]) -> None:
    status = result["status"]
    reason = f" ({one_line_reason(result)})" if status != "ok" else ""
    progress.step(f"{cell.label}: {status}{reason}")


def _warm_victim_cache(todo: list[Job], registry: Registry, env: CellEnvironment, device: str,
                       guard: InterruptGuard) -> None:
    """Train each victim once before parallel cells start, so they never race on the cache.

    Errors are left to the cells, which record them.
    """
    first_cell = {job.cell.victim: job.cell for job in reversed(todo)}
    for cell in first_cell.values():
        try:
            prepare_victim(registry, cell, env, resolve_device(device))
        except BaseException as exc:  # each cell records its own failure
            if guard.is_real(exc):
                raise
            continue


def _plan(spec: RunSpec, registry: Registry) -> tuple[list[CellSpec], dict[str, str]]:
    """Every check that needs no work: names, parameters, datasets, profile, timing."""
    profile_hash = None
    if spec.profile is not None:
        profile = LatencyProfile.load(spec.profile)
        profile_hash = profile.hash
    victims, skipped = available_victims(spec, registry)
    if spec.profile is not None and spec.settings.timing == "replay":
        other = [v for v in victims if v != profile.victim]
        if other:
            raise ConfigError(f"profile {spec.profile} was recorded for victim {profile.victim!r} "
                              f"and cannot replay {', '.join(other)}; run one grid per victim")
    return expand_grid(spec, registry, profile_hash=profile_hash, victims=victims), skipped


def run_grid(spec: RunSpec, pm: HarnessPluginManager | None = None,
             show_progress: bool = True, force: bool = False) -> GridSummary:
    """Validate everything, then run the grid (reusing finished, intact cells unless
    ``force``; an edited or unreadable cell file is reported and its cell run again).

    Raises :class:`GridInterrupted` on Ctrl-C, after the cells finished so far are kept.
    """
    if spec.executor == "ray":
        require_ray()
    pm = pm or make_plugin_manager()
    if spec.settings.isolation == "process":
        check_apart({"out": spec.out, "cache_dir": spec.cache_dir})
    registry = evaluator_registry(pm, (spec.out, spec.cache_dir))
    cells, skipped = _plan(spec, registry)
    out = check_out_dir(spec.out)
    check_out_dir(spec.cache_dir, key="cache_dir")
    with run_secret(out, spec.secret):
        return _run_cells(spec, pm, registry, cells, skipped, out, show_progress, force)


def _run_cells(spec: RunSpec, pm: HarnessPluginManager, registry: Registry,
               cells: list[CellSpec], skipped: dict[str, str], out: Path, show_progress: bool,
               force: bool) -> GridSummary:
    """The body of :func:`run_grid`, under the run's secret."""
    env = CellEnvironment(cache_dir=spec.cache_dir, data_root=spec.data_root,
                          profile_path=spec.profile, out=out, victim_salt=victim_salt(),
                          memory_bytes=spec.memory, timeout_s=spec.timeout)
    planned = [(c, config_hash(c, registry)) for c in cells]
    manifest = open_run_manifest(out)
    trust = FolderTrust.load(out, keys=[manifest.key.public])  # this folder's own key only
    todo: list[Job] = []
    done: list[Path] = []
    problems: list[str] = []
    for cell, digest in planned:
        path = cell_path(out, cell, digest)
        old, problem = previous_result(path, trust)
        if problem:
            problems.append(f"{cell.label}: {problem}; running it again")
        if (not force and old is not None and old["status"] == "ok"
                and old["config_hash"] == digest):
            done.append(path)
        else:
            todo.append(Job(cell, digest, path))
    env = replace(env, rewrites=frozenset(str(job.path) for job in todo))
    progress = Progress(len(todo), enabled=show_progress)
    for problem in problems:  # said even with --quiet: a result was changed or lost
        if show_progress:
            progress.note(problem)
        else:
            warnings.warn(problem, stacklevel=2)
    if force:
        progress.note("--force: every cell runs again, finished ones included")
    for name, reason in skipped.items():
        progress.note(f"victims=all: skipped {name} ({reason})")
    progress.note(f"{len(planned)} cells: {len(done)} finished earlier (reused), "
                  f"{len(todo)} to run -> {out}")
    results: list[dict[str, Any]] = []
    queue = JobQueue(list(todo), lambda job, why: progress.step(f"{job.cell.label}: {why}"),
                     trust, written_after=time.time() if force else None)
    with InterruptGuard() as guard:

        def finish(cell: CellSpec, path: Path, result: dict[str, Any]) -> dict[str, Any]:
            result = notify_finished(pm, result, cell, registry, path, guard, manifest)
            _step(progress, cell, result)
            results.append(result)
            return result

        ctx = RunContext(registry=registry, env=env, guard=guard, jobs=spec.jobs,
                         timeout=spec.timeout, note=progress.note,
                         ops=CellOps(compute=compute_result,
                                     write=functools.partial(write_result, manifest=manifest),
                                     abort=aborted_result, finish=finish))
        try:
            if todo and (spec.executor != "serial" or spec.timeout is not None):
                _warm_victim_cache(todo, registry, env, spec.settings.device, guard)
            if spec.executor == "ray":
                run_ray(queue, ctx, spec.ray_address)
            elif spec.executor == "process":
                run_processes(queue, ctx)
            else:
                run_serial(queue, ctx)
            replica_files = grid_replica_agreement(cells, spec.replicas, registry, env, spec.settings.device,
                                     manifest, trust, note=progress.note,
                                     is_interrupt=guard.is_real)
        except KeyboardInterrupt:
            progress.close()
            kept = len(done) + sum(r["status"] == "ok" for r in results)
            raise GridInterrupted(
                f"interrupted (Ctrl-C) after {len(results)} of {len(todo)} cells; {kept} "
                f"finished cells are kept in {out}; run the same command again to resume"
            ) from None
    progress.close()
    failed = sum(r["status"] != "ok" for r in results)
    paths = tuple(cell_path(out, c, d) for c, d in planned)
    return GridSummary(out, len(planned), len(done) + queue.finished_elsewhere, len(results),
                       failed, paths, elsewhere=queue.elsewhere, replica_files=tuple(replica_files))
