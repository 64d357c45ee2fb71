"""``harness leaderboard verify``: re-run committed cells and compare their metrics.

:func:`verify_results` is the core: given loaded cell results (``(path, result)``
pairs) it

1. lists failed cells as not verifiable and, with ``sample=N``, picks a seeded subset
   of the ok cells (:func:`select_sample`: every attack and defense appears if N allows);
2. rebuilds each cell's :class:`~harness.run.grid.CellSpec` from its result
   (:mod:`harness.board.respec`); an unregistered component, parameters a component now
   refuses, a missing replay profile, another ``HARNESS_SECRET`` mode or a device this
   machine lacks make the cell *cannot verify*, with the reason;
3. recomputes :func:`~harness.run.grid.config_hash`: a different hash means code,
   package versions or protocol changed since the cell ran, so the cell is *stale*,
   reported apart and re-run only with ``rerun_stale=True``;
4. re-runs the cell with :func:`~harness.run.runner.compute_result` (in a temporary
   ``out``; victim weights in ``cache_dir`` when given, so a persistent cache is reused)
   and compares status and every metric, exactly or within the tolerances of
   :mod:`harness.board.tolerance` (whose docstring states them). Each difference is a
   :class:`Mismatch` naming the cell file and the field; a metric present on one side
   only is one too.

:func:`verify_leaderboard` loads ``BOARD/cells/**/*.json`` with
:func:`~harness.io.results.previous_result` and calls the core. A cell whose file
holds the same config hash as another is re-run once. Cells run serially in this
process (``compute_result`` starts the isolation workers of ``isolation=process``
cells itself). Two runs with the same ``HARNESS_SECRET`` *mode* but different secrets
have equal hashes and different numbers: verify with the secret the board used.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.board.respec import CannotRebuild, find_profile, rebuild_cell, why_stale
from harness.board.tolerance import MachineClass, regime_of, tolerance_for, with_fresh_secret
from harness.board.verify_report import (
    MISSING,
    Mismatch,
    Stale,
    Unverifiable,
    Verified,
    VerifyReport,
)
from harness.cell.spec import CellEnvironment, CellSpec
from harness.errors import ConfigError, HarnessError
from harness.io.results import previous_result
from harness.io.secret import (
    ENV_VAR,
    FOLDER_FILE,
    MODE_VAR,
    folder_secret,
    fresh_secret,
    secret_env,
    victim_salt,
)
from harness.io.signing import FolderTrust
from harness.isolation.plugin_host import evaluator_registry
from harness.plugins.manager import make_plugin_manager
from harness.plugins.registry import Registry
from harness.run.grid import config_hash
from harness.run.interrupts import InterruptGuard
from harness.run.runner import compute_result
from harness.serving.devices import resolve_device

__all__ = ["Mismatch", "Stale", "Unverifiable", "Verified", "VerifyReport", "compare_results",
           "load_board", "select_sample", "verify_leaderboard", "verify_results"]


def _label(result: Mapping[str, Any], kind: str) -> str:
    comp = (result.get("components") or {}).get(kind) or {}
    cell = (result.get("cell") or {}).get(kind) or {}
    return str(comp.get("label") or comp.get("name") or cell.get("name") or "?")


def select_sample(results: Sequence[tuple[Path, Mapping[str, Any]]], sample: int | None,
                  seed: int) -> list[tuple[Path, Mapping[str, Any]]]:
    """A seeded subset of ``sample`` cells in which every attack and every defense appears
    if ``sample`` allows (first a covering pass in a random order, then random fill);
    ``None`` (or a sample at least as large) keeps all. Returned in path order."""
    if sample is not None and sample < 0:
        raise ConfigError(f"sample={sample}: give a number of cells >= 0, or none for all")
    ordered = sorted(results, key=lambda item: str(item[0]))
    if sample is None or sample >= len(ordered):
        return ordered
    order = np.random.default_rng(seed).permutation(len(ordered))
    chosen: list[int] = []
    seen: set[tuple[str, str]] = set()
    for i in order:
        if len(chosen) == sample:
            break
        keys = {("attack", _label(ordered[i][1], "attack")),
                ("defense", _label(ordered[i][1], "defense"))}
        if not keys <= seen:
            chosen.append(int(i))
            seen |= keys
    chosen += [int(i) for i in order if int(i) not in chosen][: sample - len(chosen)]
    return [ordered[i] for i in sorted(chosen)]


def compare_results(path: Path, expected: Mapping[str, Any], got: Mapping[str, Any],
                    regime: str) -> list[Mismatch]:
    """Status and every metric of ``got`` (the re-run) against ``expected`` (committed)."""
    digest = str(expected.get("config_hash", ""))
    if got.get("status") != expected.get("status"):
        error = (got.get("error") or {}).get("message", "")
        shown = f"{got.get('status')} ({error.splitlines()[0][:200]})" if error else got.get(
            "status")
        return [Mismatch(path, digest, "status", expected.get("status"), shown, "exact")]
    out = []
    want, have = expected.get("metrics") or {}, got.get("metrics") or {}
    for name in sorted(set(want) | set(have)):
        tol = tolerance_for(name, regime)
        if name not in want or name not in have:
            out.append(Mismatch(path, digest, f"metrics.{name}", want.get(name, MISSING),
                                have.get(name, MISSING), str(tol)))
        elif not tol.allows(want[name], have[name]):
            out.append(Mismatch(path, digest, f"metrics.{name}", want[name], have[name],
                                str(tol)))
    weights = [(r.get("diagnostics") or {}).get("victim_weights_hash") for r in (expected, got)]
    if out and None not in weights and weights[0] != weights[1]:  # name the cause
        out.append(Mismatch(path, digest, "diagnostics.victim_weights_hash", weights[0][:16],
                            weights[1][:16], "the cause, not a tolerance: the victim trained "
                            "to other weights here (its training is not bit-identical on this "
                            "processor)"))
    return out


@dataclass(frozen=True)
class SecretPlan:
    """Under which secret each cell is re-run, by the mode it recorded.

    A cell is re-run bit-exactly under the secret it ran with when verify holds it (the
    folder's own ``.harness-secret``, or this process's ``HARNESS_SECRET`` for a named
    secret; public cells need none). Otherwise it is re-run under ``fresh`` (a new
    random secret in the same mode: another victim draw, split and server streams) and
    compared within the ``fresh_secret`` tolerances."""

    folder: str | None = None
    named: str | None = None
    fresh: str = field(default_factory=fresh_secret)

    @classmethod
    def here(cls, board_dir: Path | None = None) -> SecretPlan:
        """The secrets this process holds: ``board_dir``'s own, ``HARNESS_SECRET``."""
        named = os.environ.get(ENV_VAR)
        own = board_dir is not None and (Path(board_dir) / FOLDER_FILE).is_file()
        folder = folder_secret(Path(board_dir)) if own else (
            named if os.environ.get(MODE_VAR) == "folder" else None)
        return cls(folder=folder, named=None if os.environ.get(MODE_VAR) == "folder" else named)

    def for_mode(self, recorded: Any) -> tuple[str | None, str, bool]:
        """(secret, mode, fresh) for a cell that recorded secret mode ``recorded``."""
        if recorded == "folder":
            return (self.folder, "folder", False) if self.folder else (self.fresh, "folder", True)
        if recorded == "secret":
            return (self.named, "secret", False) if self.named else (self.fresh, "secret", True)
        return None, "public", False


@dataclass(frozen=True)
class _Plan:
    """A cell ready to re-run."""

    path: Path
    result: Mapping[str, Any]
    cell: CellSpec
    digest: str
    env: CellEnvironment
    regime: str
    why: str


def recorded_secret_mode(result: Mapping[str, Any]) -> Any:
    """The secret mode a cell ran in (``public`` when it records none)."""
    return ((result.get("diagnostics") or {}).get("isolation") or {}).get("secret", "public")


def _prepare(path: Path, result: Mapping[str, Any], registry: Registry, base: CellEnvironment,
             profiles: Sequence[Path], here: MachineClass, fresh: bool) -> _Plan:
    """Rebuild the cell and pick its environment and regime (raises :class:`CannotRebuild`);
    called under the secret the cell is re-run with (``fresh``: not the one it ran with)."""
    cell = rebuild_cell(result, registry)
    settings = cell.settings
    env = replace(base, victim_salt=victim_salt())
    if settings.timing == "replay":
        if not settings.profile_hash:
            raise CannotRebuild("timing=replay but the cell records no profile hash")
        env = replace(base, profile_path=find_profile(settings.profile_hash, profiles))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # device=auto falling back to cpu is expected
            device_here = resolve_device(settings.device)
    except ConfigError as exc:
        raise CannotRebuild(f"device {settings.device!r}: {exc}") from None
    regime, why = regime_of(settings.timing, settings.transport, str(result.get("device", "")),
                            device_here, MachineClass.of_result(result), here)
    if fresh:
        regime, why = with_fresh_secret(regime), (
            f"re-run under a fresh secret (this process does not hold the cell's "
            f"{recorded_secret_mode(result)} secret): another victim draw; {why}")
    return _Plan(path, result, cell, config_hash(cell, registry), env, regime, why)


Rerun = Callable[[CellSpec, Registry, CellEnvironment, str, InterruptGuard], dict[str, Any]]


def verify_results(results: Iterable[tuple[Path, Mapping[str, Any]]], registry: Registry, *,
                   sample: int | None = None, seed: int = 0, cache_dir: Path | None = None,
                   data_root: Path | None = None, profiles: Sequence[Path] = (),
                   rerun_stale: bool = False, here: MachineClass | None = None,
                   progress: Callable[[str], None] | None = None,
                   rerun: Rerun | None = None, secrets: SecretPlan | None = None
                   ) -> VerifyReport:
    """Verify loaded results (see the module docstring); never writes next to them.

    ``secrets``: the secrets to re-run under (default :meth:`SecretPlan.here`);
    ``profiles``: files or folders holding the latency profiles of replay cells;
    ``here``: the machine class to compare with (default this machine's);
    ``rerun``: how a cell is computed (default :func:`~harness.run.runner.compute_result`).
    """
    start = time.perf_counter()
    note = progress or (lambda text: None)
    here = here or MachineClass.here()
    rerun = rerun or compute_result
    secrets = secrets or SecretPlan.here()
    items = [(Path(p), r) for p, r in results]
    cannot = [Unverifiable(p, f"recorded as failed ({_first_line(r)}); nothing to compare",
                           failed=True)
              for p, r in items if r.get("status") != "ok"]
    ok_items = [(p, r) for p, r in items if r.get("status") == "ok"]
    chosen = select_sample(ok_items, sample, seed)
    verified: list[Verified] = []
    mismatches: list[Mismatch] = []
    stale: list[Stale] = []
    seconds: list[float] = []
    reruns: dict[tuple[str, str | None], tuple[dict[str, Any], float]] = {}
    with tempfile.TemporaryDirectory(prefix="harness-verify-") as tmp, InterruptGuard() as guard:
        base = CellEnvironment(cache_dir=Path(cache_dir or Path(tmp) / "cache"),
                               data_root=data_root, out=Path(tmp) / "out")
        base.out.mkdir(parents=True, exist_ok=True)
        base.cache_dir.mkdir(parents=True, exist_ok=True)
        for i, (path, result) in enumerate(chosen, 1):
            head = f"[{i}/{len(chosen)}] {path}"
            secret, mode, fresh = secrets.for_mode(recorded_secret_mode(result))
            with secret_env(secret, mode):
                try:
                    plan = _prepare(path, result, registry, base, profiles, here, fresh)
                except (CannotRebuild, HarnessError) as exc:
                    cannot.append(Unverifiable(path, str(exc)))
                    note(f"{head}: cannot verify ({exc})")
                    continue
                stored = str(result.get("config_hash", ""))
                is_stale = plan.digest != stored
                why = why_stale(result, plan.cell, registry) if is_stale else ""
                if is_stale and not rerun_stale:
                    stale.append(Stale(path, stored, plan.digest, why))
                    note(f"{head}: stale (hash {stored[:12]} -> {plan.digest[:12]}), not re-run")
                    continue
                if (plan.digest, secret) not in reruns:
                    t0 = time.perf_counter()
                    got = rerun(plan.cell, registry, plan.env, plan.digest, guard)
                    reruns[plan.digest, secret] = (got, time.perf_counter() - t0)
                    seconds.append(reruns[plan.digest, secret][1])
            got, took = reruns[plan.digest, secret]
            diff = compare_results(path, result, got, plan.regime)
            if is_stale:
                stale.append(Stale(path, stored, plan.digest, why, rerun=True,
                                   mismatches=tuple(diff)))
                note(f"{head}: stale, re-run: {len(diff)} fields differ")
            elif diff:
                mismatches += diff
                note(f"{head}: MISMATCH in {', '.join(m.field for m in diff)}")
            else:
                verified.append(Verified(path, stored, plan.regime, plan.why, took))
                note(f"{head}: verified ({plan.regime}, {took:.1f} s)")
    return VerifyReport(verified=tuple(verified), mismatches=tuple(mismatches),
                        stale=tuple(stale), cannot_verify=tuple(cannot),
                        wall_s=time.perf_counter() - start, ok_cells=len(ok_items),
                        sampled=len(chosen), rerun_seconds=tuple(seconds))


def _first_line(result: Mapping[str, Any]) -> str:
    error = result.get("error") or {}
    text = str(error.get("message") or error.get("type") or "no error recorded").strip()
    return (text.splitlines() or ["no error recorded"])[0][:200]


def load_board(board_dir: Path, trust: FolderTrust | None = None
               ) -> tuple[list[tuple[Path, dict[str, Any]]], list[Unverifiable]]:
    """The loadable cell results under ``board_dir/cells`` and the files that are not
    (among them any not signed and listed as ``trust``, by default the folder's, says)."""
    cells = Path(board_dir) / "cells"
    if not cells.is_dir():
        raise ConfigError(f"{board_dir} has no cells/ folder; give a leaderboard or run "
                          "folder (one holding cells/<victim>/<defense>/<attack>/*.json)")
    loaded, bad = [], []
    trust = trust or FolderTrust.of(Path(board_dir))
    for path in sorted(cells.rglob("*.json")):
        try:
            result, problem = previous_result(path, trust)
        except OSError as exc:  # unreadable (permissions, a folder named *.json)
            result, problem = None, str(exc)
        if result is None:
            bad.append(Unverifiable(path, "not loadable: " + (problem or "missing")))
        else:
            loaded.append((path, result))
    if not loaded and not bad:
        raise ConfigError(f"{cells} holds no cell result files (*.json)")
    return loaded, bad


def verify_leaderboard(board_dir: Path, sample: int | None = None, seed: int = 0,
                       registry: Registry | None = None, *, cache_dir: Path | None = None,
                       data_root: Path | None = None, profiles: Sequence[Path] = (),
                       rerun_stale: bool = False,
                       progress: Callable[[str], None] | None = None,
                       rerun: Rerun | None = None) -> VerifyReport:
    """Load ``board_dir``'s cells and :func:`verify_results` them. Replay profiles are
    looked up in ``profiles`` and in ``board_dir`` itself. A cell file that does not load
    (corrupt, invalid, refused) is listed as cannot verify."""
    registry = registry or evaluator_registry(make_plugin_manager(), (Path(board_dir),))
    trust = FolderTrust.of(Path(board_dir))
    loaded, bad = load_board(Path(board_dir), trust)
    report = verify_results(loaded, registry, sample=sample, seed=seed, cache_dir=cache_dir,
                            data_root=data_root, profiles=(*profiles, Path(board_dir)),
                            rerun_stale=rerun_stale, progress=progress, rerun=rerun,
                            secrets=SecretPlan.here(Path(board_dir)))
    return replace(report, cannot_verify=(*bad, *report.cannot_verify),
                   signing_keys=tuple(sorted(trust.keys)))
