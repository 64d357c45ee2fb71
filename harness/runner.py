"""Grid runner: resume, atomic per-cell results, failure isolation, serial/process executors.

Each cell's result is ``OUT/cells/<victim>/<defense>/<attack>/seed<S>-<hash16>.json``.
A re-run skips cells whose file is valid, has status ``ok`` and the same config hash;
corrupt files and failed cells are run again. A cell that raises is recorded as
``failed`` with its error and the grid goes on. With ``executor=process`` each cell
runs in its own spawned process (``jobs`` at a time), so a crash, a kill or
``timeout=`` seconds only fail that cell.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import __version__
from harness.atomic import write_json_atomic
from harness.cell import CellEnvironment, prepare_victim, run_cell
from harness.config import RunSpec
from harness.devices import resolve_device
from harness.errors import ComponentFailure, ConfigError
from harness.grid import CellSpec, available_victims, config_hash, expand_grid, package_versions
from harness.machine import machine_info
from harness.plugins import HarnessPluginManager, make_plugin_manager
from harness.progress import Progress
from harness.registry import Registry
from harness.results import (
    SCHEMA_VERSION,
    check_out_dir,
    git_commit,
    load_result,
)


@dataclass(frozen=True)
class GridSummary:
    out: Path
    total: int
    reused: int
    ran: int
    failed: int
    result_paths: tuple[Path, ...]


def cell_path(out: Path, cell: CellSpec, digest: str) -> Path:
    return (out / "cells" / cell.victim.name / cell.defense.name / cell.attack.name
            / f"seed{cell.seed}-{digest[:16]}.json")


def _component_info(registry: Registry, cell: CellSpec) -> dict[str, Any]:
    return {k: {"name": getattr(cell, k).name, "params": getattr(cell, k).params,
                **registry.get(k, getattr(cell, k).name).origin()}
            for k in ("victim", "defense", "attack")}


def build_result(cell: CellSpec, registry: Registry, digest: str, status: str,
                 metrics: dict, diagnostics: dict, error: dict | None, wall: float,
                 device: str) -> dict[str, Any]:
    timing = cell.to_json()["timing"]
    return {
        "schema_version": SCHEMA_VERSION, "harness_version": __version__,
        "config_hash": digest, "cell": cell.to_json(),
        "components": _component_info(registry, cell), "seed": cell.seed, "timing": timing,
        "device": device, "machine": asdict(machine_info(device)), "packages": package_versions(),
        "git_commit": git_commit(), "status": status, "error": error,
        "metrics": metrics, "diagnostics": diagnostics, "wall_time_s": round(wall, 4),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _error_info(exc: BaseException, cell: CellSpec) -> dict[str, Any]:
    component = None
    if isinstance(exc, ComponentFailure):
        text = str(exc)
        for kind in ("attack", "defense", "victim"):
            if text.startswith(kind):
                component = f"{kind}:{getattr(cell, kind).name}"
    return {"type": type(exc).__name__, "message": str(exc)[:4000], "component": component,
            "traceback": "".join(traceback.format_exception(exc))[-8000:]}


def execute_cell(cell: CellSpec, registry: Registry, env: CellEnvironment, digest: str,
                 path: Path) -> dict[str, Any]:
    """Run a cell and write its result file (``failed`` with the error if it raises)."""
    start = time.perf_counter()
    device = cell.device
    try:
        device = resolve_device(cell.device)
        metrics, diagnostics = run_cell(cell, registry, env)
        result = build_result(cell, registry, digest, "ok", metrics, diagnostics, None,
                              time.perf_counter() - start, device)
    except Exception as exc:
        result = build_result(cell, registry, digest, "failed", {}, {}, _error_info(exc, cell),
                              time.perf_counter() - start, device)
    write_json_atomic(path, result)
    return result


def _worker(cell: CellSpec, env: CellEnvironment, digest: str, path: str) -> None:
    registry = Registry.from_manager(make_plugin_manager())
    execute_cell(cell, registry, env, digest, Path(path))


def _failed_by_runner(cell, registry, digest, path, message, wall) -> dict[str, Any]:
    error = {"type": "CellAborted", "message": message, "component": None}
    result = build_result(cell, registry, digest, "failed", {}, {}, error, wall, cell.device)
    write_json_atomic(path, result)
    return result


def _run_processes(todo, registry, env, jobs, timeout, progress, on_result) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    pending = list(todo)
    running: dict[Any, tuple] = {}
    results = []
    while pending or running:
        while pending and len(running) < jobs:
            cell, digest, path = pending.pop(0)
            proc = ctx.Process(target=_worker, args=(cell, env, digest, str(path)), daemon=True)
            proc.start()
            running[proc] = (cell, digest, path, time.monotonic())
        time.sleep(0.05)
        for proc, (cell, digest, path, started) in list(running.items()):
            elapsed = time.monotonic() - started
            if proc.is_alive() and timeout is not None and elapsed > timeout:
                proc.kill()
                proc.join()
                results.append(_failed_by_runner(cell, registry, digest, path,
                                                 f"cell timed out after {timeout:g} s", elapsed))
            elif proc.is_alive():
                continue
            else:
                proc.join()
                result = load_result(path)
                if result is None or result.get("config_hash") != digest:
                    result = _failed_by_runner(cell, registry, digest, path,
                                               f"cell process exited with code {proc.exitcode} "
                                               "before writing its result", elapsed)
                results.append(result)
            del running[proc]
            on_result(results[-1])
            progress.step(f"{cell.label}: {results[-1]['status']}")
    return results


def _warm_victim_cache(todo, registry: Registry, env: CellEnvironment, device: str) -> None:
    """Train each victim once before parallel cells start, so they never race on the cache.

    Errors are left to the cells, which record them.
    """
    first_cell = {cell.victim: cell for cell, _, _ in reversed(todo)}
    for cell in first_cell.values():
        try:
            prepare_victim(registry, cell, env, resolve_device(device))
        except Exception:  # each cell records its own failure
            continue


def run_grid(spec: RunSpec, pm: HarnessPluginManager | None = None,
             show_progress: bool = True) -> GridSummary:
    """Validate everything, then run the grid (reusing finished cells)."""
    pm = pm or make_plugin_manager()
    registry = Registry.from_manager(pm)
    profile_hash = None
    if spec.profile is not None:
        from harness.profiles import LatencyProfile

        profile = LatencyProfile.load(spec.profile)
        profile_hash = profile.hash
    victims, skipped = available_victims(spec, registry)
    if spec.profile is not None and spec.timing == "replay":
        other = [v for v in victims if v != profile.victim]
        if other:
            raise ConfigError(f"profile {spec.profile} was recorded for victim {profile.victim!r} "
                              f"and cannot replay {', '.join(other)}; run one grid per victim")
    cells = expand_grid(spec, registry, profile_hash=profile_hash, victims=victims)
    out = check_out_dir(spec.out)
    env = CellEnvironment(cache_dir=spec.cache_dir, data_root=spec.data_root,
                          profile_path=spec.profile)
    planned = [(c, config_hash(c, registry)) for c in cells]
    todo, done = [], []
    for cell, digest in planned:
        path = cell_path(out, cell, digest)
        old = load_result(path)
        if old is not None and old["status"] == "ok" and old["config_hash"] == digest:
            done.append(path)
        else:
            todo.append((cell, digest, path))
    progress = Progress(len(todo), enabled=show_progress)
    for name, reason in skipped.items():
        progress.note(f"victims=all: skipped {name} ({reason})")
    progress.note(f"{len(planned)} cells: {len(done)} finished earlier (reused), "
                  f"{len(todo)} to run -> {out}")
    results: list[dict[str, Any]] = []
    if todo:
        if spec.executor == "process":
            _warm_victim_cache(todo, registry, env, spec.device)

        def on_result(result: dict[str, Any]) -> None:
            pm.hook.harness_cell_finished(result=result)

        if spec.executor == "process":
            results = _run_processes(todo, registry, env, spec.jobs, spec.timeout, progress,
                                     on_result)
        else:
            for cell, digest, path in todo:
                results.append(execute_cell(cell, registry, env, digest, path))
                on_result(results[-1])
                progress.step(f"{cell.label}: {results[-1]['status']}")
    progress.close()
    failed = sum(r["status"] != "ok" for r in results)
    paths = tuple(cell_path(out, c, d) for c, d in planned)
    return GridSummary(out, len(planned), len(done), len(results), failed, paths)
