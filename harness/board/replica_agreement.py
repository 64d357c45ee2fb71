"""The replica agreement in the leaderboard: summarise ``OUT/replicas/*.json``, print it.

:mod:`harness.run.replicas` writes one file per victim (name and parameters) and run
dir. The leaderboard shows, per victim in its groups, the most recent file's mean and
95% interval over the replicas, its seeds and each replica's values; a victim without a
file (``replicas=0``, or a run dir from before it) is ``missing``, and every
table shows it as n/a.

It is a *reference*, not an upper bound: retraining the victim outright is one way to
reproduce its strategy, and an attack can match it or do better (the true-exit reference
attack and single replicas score inside or above its interval). Boards written before the
rename call the section ``replica_ceiling``; :func:`replica_section` reads either.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

REPLICA_METRICS = ("exit_agreement", "exit_kappa", "fidelity", "efficiency_gap",
                   "exit_distribution_tv")
"""The metrics the printed replica-agreement section shows (the file and the JSON hold them all)."""


def replica_section(board: dict[str, Any]) -> list[Any]:
    """The board's replica-agreement entries (``replica_ceiling`` in older boards)."""
    section = board.get("replica_agreement", board.get("replica_ceiling"))
    return section if isinstance(section, list) else []


def with_replica_names(entry: Any) -> Any:
    """An attack-ranking entry with ``replica_*`` fields (older boards: ``ceiling_*``)."""
    if not isinstance(entry, dict):
        return entry
    old = {f"replica_{k[len('ceiling_'):]}": v for k, v in entry.items()
           if k.startswith("ceiling_")}
    return {**old, **entry}


def victim_key(record: dict[str, Any]) -> tuple[str, str]:
    """(label, canonical params) of a replica file's victim: the key leaderboard groups use."""
    victim = record["victim"]
    return (str(victim.get("label") or victim["name"]),
            json.dumps(victim.get("params", {}), sort_keys=True, separators=(",", ":")))


def _entry(display: str, record: dict[str, Any] | None) -> dict[str, Any]:
    if record is None:
        return {"victim": display, "status": "missing",
                "reason": "no replica agreement in this run dir (replicas=0, or results from "
                          "before it); run harness run again to compute it",
                "n": 0, "seeds": [], "victim_train_seed": None, "metrics": {}, "replicas": [],
                "config_hash": None, "secret_mode": None}
    return {"victim": display, "status": record["status"], "reason": record["reason"],
            "n": len(record["replicas"]), "seeds": list(record["seeds"]),
            "victim_train_seed": record.get("victim_train_seed"),
            "metrics": record["metrics"],
            "replicas": [{"seed": r["seed"], "metrics": r["metrics"]}
                         for r in record["replicas"]],
            "config_hash": record["config_hash"], "secret_mode": record["secret_mode"]}


def replica_entries(victims: dict[tuple[str, str], str],
                    records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per victim (key -> display name), from its most recent replica file."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        key = victim_key(record)
        if key in victims and (key not in latest
                               or record["finished_at"] >= latest[key]["finished_at"]):
            latest[key] = record
    return sorted((_entry(display, latest.get(key)) for key, display in victims.items()),
                  key=lambda e: e["victim"])


def replica_row(entry: dict[str, Any]) -> tuple[str, dict[str, float | None]]:
    """(name, metric means) of a victim's replica agreement as a row of the attack table."""
    if entry["status"] != "ok":
        return "replica agreement: n/a", {}
    return (f"replica agreement ({entry['n']} replicas)",
            {m: v.get("mean") for m, v in entry["metrics"].items()})


def _stat(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    lo, hi = stat.get("ci95", [None, None])
    interval = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
    return f"{stat['mean']:.3f}{interval}"


def format_replica_agreement(board: dict[str, Any]) -> str:
    """Each victim's replica agreement: mean [95% t-interval] over replicas, or n/a and why."""
    entries = replica_section(board)
    if not entries:
        return ""
    lines = ["replica agreement (the victim retrained with other seeds, its own recipe and "
             "calibration; mean [95% interval] over replicas, on the test split)"]
    for e in entries:
        if e["status"] != "ok":
            lines.append(f"  {e['victim']}: n/a ({e['status'].replace('_', ' ')}: "
                         f"{e['reason']})")
            continue
        stats = ", ".join(f"{m.replace('_', ' ')} {_stat(e['metrics'].get(m))}"
                          for m in REPLICA_METRICS if m in e["metrics"])
        lines.append(f"  {e['victim']}: {stats}; n={e['n']}, seeds "
                     f"{','.join(map(str, e['seeds']))} (victim's train_seed "
                     f"{e['victim_train_seed']})")
    return "\n".join(lines)
