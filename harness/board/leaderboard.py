"""Aggregate cell results into the leaderboard JSON (docs/design.md section 7).

Groups are exact (:mod:`harness.board.groups`): everything that determines a result but
the seed. Each row carries its group key and id, the varying fields that tell it apart
from rows with the same labels, the config hash and file of every member cell, the plugin
distributions, versions and source digests, the package versions, the mean and 95%
Student-t interval over seeds of every metric (no interval for one seed), a bootstrap
interval over test samples of exit agreement and fidelity, and the per-exit confusion
matrix (victim exit x stolen exit, summed over seeds). Rankings, paired differences and
the cost budget: :mod:`harness.board.ranking`; each victim's replica agreement:
:mod:`harness.board.replica_agreement`.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from harness.board.groups import (
    KINDS,
    canonical,
    component_id,
    group_key,
    key_id,
    scenario_of,
    unranked_because,
    variants,
)
from harness.board.ranking import (
    CostBudget,
    paired_differences,
    rank_attacks,
    rank_defenses,
)
from harness.board.replica_agreement import replica_entries
from harness.errors import OutputDirError
from harness.io.atomic import write_json_atomic
from harness.io.integrity import SEAL
from harness.io.results import load_replica_files, load_result
from harness.io.schema import SCHEMA_VERSION, leaderboard_schema
from harness.io.signing import FolderTrust
from harness.metrics.stats import bootstrap_ci, mean_ci
from harness.stages import PROTOCOL_VERSION
from harness.version import __version__

__all__ = ["aggregate", "board_header", "build_leaderboard", "dedupe", "load_results",
           "write_board"]

BOOTSTRAP_SEED = 20261129
"""The bootstrap's fixed seed (with the group id), so a leaderboard rebuilds identically."""


def load_results(out: Path, trust: FolderTrust) -> list[dict[str, Any]]:
    """The results under ``out/cells`` that ``trust`` vouches for, each with its path
    relative to ``out`` under ``_path``; a bad file is skipped with a warning (``harness
    leaderboard build`` is the strict reader)."""
    out = Path(out)
    results = []
    for path in sorted((out / "cells").rglob("*.json")):
        result = load_result(path, trust)
        if result is not None:
            results.append({**result, "_path": str(path.relative_to(out))})
    return dedupe(results)


def dedupe(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per cell: files are identified by their config hash (which covers the
    seed), never by their name. A copy of a file is counted once; two different results
    of one cell (a re-run under live timing, say) keep the newest, with a warning."""
    by_hash: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_hash[r["config_hash"]].append(r)
    kept = []
    for same in by_hash.values():
        newest = max(same, key=lambda r: (r["finished_at"], r.get("_path", "")))
        digests = {(r.get(SEAL) or {}).get("sha256") for r in same}
        if len(same) > 1:
            where = ", ".join(sorted(str(r.get("_path", "a result")) for r in same))
            what = ("copies of one cell result" if len(digests) == 1 else
                    "different results of the same cell (same config hash and seed)")
            warnings.warn(f"{where} are {what}; counted once (kept "
                          f"{newest.get('_path', 'the newest')}; config hash "
                          f"{newest['config_hash'][:16]})", stacklevel=2)
        kept.append(newest)
    return sorted(kept, key=lambda r: r.get("_path", r["config_hash"]))


def _origins(cells: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per component kind, the distinct plugin origins of the cells."""
    out = {}
    for kind in KINDS:
        seen = {canonical({k: v for k, v in c["components"][kind].items()
                           if k in ("plugin", "distribution", "version", "source_digest")})
                for c in cells}
        out[kind] = [json.loads(s) for s in sorted(seen)]
    return out


def _distinct_packages(cells: list[dict[str, Any]]) -> list[dict[str, str]]:
    seen = {canonical(c.get("packages", {})) for c in cells}
    return [json.loads(s) for s in sorted(seen)]


def _confusion(cells: list[dict[str, Any]]) -> list[list[int]] | None:
    tables = [np.asarray(t["counts"]) for c in cells
              if isinstance(t := (c.get("diagnostics") or {}).get("exit_confusion"), dict)
              and t.get("counts")]
    if not tables or len({t.shape for t in tables}) != 1:
        return None
    return np.sum(tables, axis=0).astype(int).tolist()


def _row(key: dict[str, Any], rs: list[dict[str, Any]], reference_attacks: set[str]) -> dict:
    ok = [r for r in rs if r["status"] == "ok"]
    gid = key_id(key)
    metric_names = sorted({m for r in ok for m in r["metrics"]})
    tables = [(r.get("diagnostics") or {}).get("exit_confusion") for r in ok]
    rng = np.random.default_rng([BOOTSTRAP_SEED, int(gid, 16) % 2**32])
    return {
        "group_id": gid, "key": key,
        **{kind: key[kind]["label"] for kind in KINDS},
        "defense_name": key["defense"]["name"], "attack_name": key["attack"]["name"],
        "defense_id": component_id(key, "defense"), "attack_id": component_id(key, "attack"),
        "scenario_id": key_id(scenario_of(key)),
        "threat": dict(key["threat"]), "isolation": key["isolation"],
        "unranked": unranked_because(key),
        "reference": key["attack"]["name"] in reference_attacks,
        "seeds": sorted(r["seed"] for r in ok), "failed": len(rs) - len(ok),
        "failed_seeds": sorted(r["seed"] for r in rs if r["status"] != "ok"),
        "errors": sorted({(r.get("error") or {}).get("message", "")[:300]
                          for r in rs if r["status"] != "ok"}),
        "config_hashes": sorted(r["config_hash"] for r in rs),
        "victim_weights": sorted({str(w) for r in ok if (w := (r.get("diagnostics") or {})
                                                           .get("victim_weights_hash"))}),
        "cells": sorted(r["_path"] for r in rs if r.get("_path")),
        "plugins": _origins(rs), "packages": _distinct_packages(rs),
        "metrics": {m: mean_ci([r["metrics"].get(m) for r in ok]) for m in metric_names},
        "bootstrap_ci95": bootstrap_ci(tables, rng),
        "exit_confusion": _confusion(ok),
        "_cells": ok,
    }


def aggregate(results: list[dict[str, Any]], reference_attacks: set[str],
              replica_files: list[dict[str, Any]] | None = None,
              budget: CostBudget | None = None,
              real_attacks: Collection[str] = ()) -> dict[str, Any]:
    """Exact groups, then the rankings, paired differences and each victim's replica
    agreement from ``replica_files`` (none -> ``missing``); a defense is
    complete only when run against every attack named in ``real_attacks`` (the registered
    real attacks) besides every real attack of its scenario."""
    budget = budget or CostBudget()
    groups: dict[str, tuple[dict[str, Any], list[dict]]] = {}
    for r in dedupe(results):
        key = group_key(r)
        groups.setdefault(canonical(key), (key, []))[1].append(r)
    ordered = sorted(groups.values(), key=lambda kv: (
        kv[0]["victim"]["label"], kv[0]["defense"]["label"], kv[0]["attack"]["label"],
        canonical(kv[0])))
    rows = [_row(key, rs, reference_attacks) for key, rs in ordered]
    keys = [key for key, _ in ordered]
    for row, variant, scenario_variant in zip(
            rows, variants(keys), variants(keys, fields_of=scenario_of), strict=True):
        row["variant"] = variant
        row["scenario"] = row["victim"] + (f" [{scenario_variant}]" if scenario_variant else "")
    ranked = [r for r in rows if r["unranked"] is None]
    replicas = replica_entries(_victim_names(keys), replica_files or [])
    board = {"groups": rows, "cost_budget": budget.to_json(),
             "defense_ranking": rank_defenses(ranked, budget, real_attacks),
             "attack_ranking": rank_attacks(ranked, replicas),
             "paired_differences": paired_differences(ranked),
             "replica_agreement": replicas,
             "cells": {"ok": sum(r["status"] == "ok" for r in results),
                       "failed": sum(r["status"] != "ok" for r in results),
                       "groups": len(rows)}}
    for row in rows:
        del row["_cells"]
    return board


def _victim_names(keys: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(label, canonical params) of each victim -> its name in tables (the label, with the
    parameters appended where one label has several parameter sets)."""
    pairs = {(k["victim"]["label"], canonical(k["victim"]["params"])) for k in keys}
    labels = [label for label, _ in pairs]
    return {(label, params): label if labels.count(label) == 1 else f"{label}{params}"
            for label, params in pairs}


def board_header(command: str | None) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "harness_version": __version__,
            "protocol_version": PROTOCOL_VERSION,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "headline": "exit_agreement", "command": command}


def write_board(board: dict[str, Any], target: Path) -> None:
    """Validate ``board`` and write it atomically (a clear error if the folder is not writable)."""
    jsonschema.validate(board, leaderboard_schema())
    try:
        write_json_atomic(target, board)
    except OSError as exc:
        raise OutputDirError(f"cannot write {target} ({exc.strerror or exc}); make the folder "
                             "writable or copy the results elsewhere") from None


def build_leaderboard(out: Path, reference_attacks: set[str], command: str | None = None,
                      budget: CostBudget | None = None,
                      real_attacks: Collection[str] = ()) -> dict[str, Any]:
    """Aggregate every result under ``out/cells`` in place; write ``out/leaderboard.json``.

    Used after ``harness run`` (bad files were already reported and re-run there, so they
    are skipped with a warning); ``harness leaderboard build`` is the strict one."""
    trust = FolderTrust.of(Path(out))
    results = load_results(out, trust)
    board = {**board_header(command),
             **aggregate(results, reference_attacks, load_replica_files(out, trust), budget,
                         real_attacks)}
    write_board(board, Path(out) / "leaderboard.json")
    return board
