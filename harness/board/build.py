"""``harness leaderboard build RUN_DIR... -o DIR``: merge runs into a citable leaderboard.

Every cell file of every run is read strictly: a file that is not JSON, does not match
the schema or was edited after it was written (its content digest) stops the build with
the file and the field named. Runs of different schema or protocol versions are refused
before anything is written (their numbers are not comparable). Cells are identified by
their config hash, so the same cell reached through two runs or copied under another
name counts once. The output folder gets a copy of every member cell file (byte for byte,
so its digest and signature still check), the replica-agreement files, the runs' signed
manifests, their public keys (``signing-keys.json``; the private keys stay with the runs),
``leaderboard.json`` (with the command that built it, the source runs and the signing
keys' fingerprints) and ``schema.json``; its old ``cells/``, ``replicas/`` and
``manifests/`` are replaced as a whole. A cell that is not signed by its run's key and
listed in one of the run's manifests stops the build.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

from harness.board.leaderboard import aggregate, board_header, dedupe, write_board
from harness.board.ranking import CostBudget
from harness.board.remote import read_score, write_scores
from harness.errors import OutputDirError, ResultFileError
from harness.io.atomic import write_json_atomic
from harness.io.results import check_result, load_replica_files, parse_result
from harness.io.schema import SCHEMA_VERSION, combined_schema
from harness.io.signing import MANIFESTS, FolderTrust, write_public_keys
from harness.stages import PROTOCOL_VERSION


def _versions(obj: Any, path: Path) -> tuple[Any, Any]:
    """(schema_version, protocol_version) of a parsed result file, read before validation
    so a file of another version gets that message, not a schema error."""
    if not isinstance(obj, dict):
        raise ResultFileError(f"result file {path} is not a JSON object", path)
    return obj.get("schema_version"), obj.get("protocol_version")


def check_run_dir(run: Path, command: str = "leaderboard build") -> Path:
    """``run`` if it is the out= folder of a `harness run`, else a clear error."""
    run = Path(run)
    if not run.exists():
        raise OutputDirError(f"{command}: {run} does not exist; give the out= folder of a "
                             "`harness run` (it holds cells/)")
    if not run.is_dir():
        raise OutputDirError(f"{command}: {run} is a file; give the out= folder of a "
                             "`harness run` (it holds cells/)")
    if not (run / "cells").is_dir():
        raise OutputDirError(f"{command}: {run} holds no cells/ folder, so it is not the out= "
                             "folder of a `harness run`; check the path")
    return run


def read_runs(runs: list[Path], trusts: dict[Path, FolderTrust]
              ) -> list[tuple[Path, Path, dict[str, Any]]]:
    """(run, file, result) for every cell file; refuses mixed versions and bad files and
    cells the run's ``trusts`` entry does not vouch for."""
    files = [(run, p, parse_result(p)) for run in map(check_run_dir, runs)
             for p in sorted((run / "cells").rglob("*.json"))]
    found: dict[tuple[Any, Any], list[Path]] = {}
    for _, path, obj in files:
        found.setdefault(_versions(obj, path), []).append(path)
    expected = (SCHEMA_VERSION, PROTOCOL_VERSION)
    if set(found) - {expected}:
        lines = [f"schema {s}, protocol {p}: {len(ps)} cells (e.g. {ps[0]})"
                 for (s, p), ps in sorted(found.items(), key=str)]
        raise ResultFileError(
            "leaderboard build: the runs mix result versions - " + "; ".join(lines)
            + f". This harness writes schema {SCHEMA_VERSION}, protocol {PROTOCOL_VERSION}; "
            "numbers of other versions are not comparable. Re-run the old grids with this "
            "harness (`harness run` with the same keys) or build them with the harness that "
            "wrote them.")
    return [(run, path, check_result(obj, path, trusts[run])) for run, path, obj in files]


def _replace_tree(target: Path, fill: Any) -> None:
    """Build ``target`` in a sibling temporary folder with ``fill(tmp)``, then swap it in."""
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        fill(tmp)
        old = target.with_name(f".{target.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_board(runs: list[Path], out: Path, reference_attacks: set[str],
                command: str | None = None, budget: CostBudget | None = None,
                real_attacks: Collection[str] = (),
                remote: Collection[Path] = ()) -> dict[str, Any]:
    """Merge ``runs`` into ``out`` (see the module docstring), with the remote-attack
    scores of the ``remote`` folders (:mod:`harness.board.remote`); returns the board."""
    out = Path(out)
    scores = [(Path(f), read_score(f)) for f in remote]  # all checked before anything is written
    trusts = {run: FolderTrust.of(run) for run in map(check_run_dir, runs)}
    entries = read_runs(runs, trusts)
    for run in runs:
        if out.resolve() == Path(run).resolve():
            raise OutputDirError(f"leaderboard build: -o {out} is one of the run folders; give "
                                 "another folder (the build copies the cells there)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(f"leaderboard build: cannot create {out} ({exc.strerror or exc}); "
                             "choose a writable folder") from None
    results = dedupe([{**result, "_path": str(path.relative_to(run)), "_source": str(path)}
                      for run, path, result in entries])
    replica_files = [c for trust in trusts.values() for c in load_replica_files(trust.folder, trust)]

    def copy_cells(tmp: Path) -> None:
        for r in results:
            target = tmp / Path(r["_path"]).relative_to("cells")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(r["_source"], target)

    def copy_replicas(tmp: Path) -> None:
        for run in runs:
            for path in sorted((Path(run) / "replicas").glob("*.json")):
                shutil.copyfile(path, tmp / path.name)

    def copy_manifests(tmp: Path) -> None:
        for trust in trusts.values():
            for path in sorted((trust.folder / MANIFESTS).glob("*.json")):
                if path.name not in trust.bad_manifests:
                    shutil.copyfile(path, tmp / path.name)

    _replace_tree(out / "cells", copy_cells)
    _replace_tree(out / "replicas", copy_replicas)
    _replace_tree(out / MANIFESTS, copy_manifests)
    remote_rows: list[dict[str, Any]] = []
    _replace_tree(out / "remote", lambda tmp: remote_rows.extend(write_scores(scores, tmp)))
    keys = [key for trust in trusts.values() for key in trust.keys.values()]
    write_public_keys(out, keys)
    for r in results:
        r.pop("_source")
    board = {**board_header(command), "signing_keys": sorted({k.id for k in keys}),
             "sources": [{"run_dir": os.path.relpath(Path(run).resolve(), out.resolve()),
                          "cells": sum(1 for e in entries if e[0] == run)} for run in runs],
             **aggregate(results, reference_attacks, replica_files, budget, real_attacks),
             "remote_attacks": remote_rows}
    write_board(board, out / "leaderboard.json")
    write_json_atomic(out / "schema.json", combined_schema())
    return board
