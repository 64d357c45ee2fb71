"""Tolerant reading of a ``leaderboard.json`` for the rendered page and its plots.

The board's format grows (new per-group and per-entry fields arrive with each step), so
the renderer never indexes it directly: these helpers return ``None`` (shown ``n/a``) for
anything missing or of an unexpected type, and pick the rows a plot needs (the default
scenario, one group per attack x defense) with the choice stated in a note.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any

from harness.board.groups import GRANTED

DEFAULT_THREAT = GRANTED
"""The threat model of a row that records none (as in :mod:`harness.board.leaderboard`)."""


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def num(value: Any) -> float | None:
    """A finite number as float, else None (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def text(value: Any) -> str:
    """A field as display text: strings as they are, anything else as compact JSON."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else "n/a"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def stat(metrics: Any, name: str) -> tuple[float | None, list[float | None], int | None]:
    """(mean, [lo, hi], n) of ``metrics[name]`` (a mean_ci dict or a bare number)."""
    value = as_dict(metrics).get(name)
    if not isinstance(value, dict):
        return num(value), [None, None], None
    ci = as_list(value.get("ci95"))
    lo_hi = [num(ci[0]), num(ci[1])] if len(ci) == 2 else [None, None]
    n = value.get("n")
    return num(value.get("mean")), lo_hi, n if isinstance(n, int) and not isinstance(n, bool) else None


def cost_mean(costs: Any, name: str) -> float | None:
    """A cost of a defense entry: a bare mean today, a mean_ci dict maybe tomorrow."""
    return stat(costs, name)[0]


def threat_of(row: Any) -> dict[str, str]:
    threat = as_dict(as_dict(row).get("threat"))
    return {k: text(threat.get(k, v)) for k, v in DEFAULT_THREAT.items()} | {
        str(k): text(v) for k, v in threat.items() if k not in DEFAULT_THREAT}


def threat_text(row: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in threat_of(row).items())


def scenario_of(row: Any) -> tuple[str, str]:
    """(victim, threat text): rows are ranked and plotted per scenario."""
    return text(as_dict(row).get("victim")), threat_text(row)


def is_default_threat(row: Any) -> bool:
    return threat_of(row) == DEFAULT_THREAT


_VARIANT = re.compile(r"\{.*\}$", re.S)


def base_name(row: dict[str, Any], kind: str) -> str:
    """A component's label without the parameter suffix a sweep adds (``jitter{scale=1}``
    -> ``jitter``); from the group key when it carries one."""
    comp = as_dict(as_dict(as_dict(row.get("key")).get("components")).get(kind))
    label = comp.get("label") or comp.get("name")
    if isinstance(label, str) and label:
        return label
    return _VARIANT.sub("", text(row.get(kind)))


def groups(board: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(group id, row) of every group: its ``group_id`` when present, else its index."""
    out = []
    for i, row in enumerate(as_list(board.get("groups"))):
        if isinstance(row, dict):
            gid = row.get("group_id")
            out.append((text(gid) if gid is not None else str(i), row))
    return out


def seeds_of(row: dict[str, Any]) -> list[Any]:
    return as_list(row.get("seeds"))


def main_scenario(rows: list[dict[str, Any]]) -> str | None:
    """The threat text to plot for one victim: the default threat when present, else the
    most common one."""
    if not rows:
        return None
    if any(is_default_threat(r) for r in rows):
        return threat_text({})
    return Counter(threat_text(r) for r in rows).most_common(1)[0][0]


def pick_groups(rows: list[dict[str, Any]]) -> tuple[dict[tuple[str, str], dict[str, Any]], list[str]]:
    """One group per (attack, defense) base name: where parameter variants (or several
    isolation modes) share a cell, the one with the most seeds (then an isolated one, then
    the unparameterised name, then the fewest failures). Returns the choice and a note
    per cell that had a choice."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((base_name(row, "attack"), base_name(row, "defense")), []).append(row)
    chosen, notes = {}, []
    for key, candidates in sorted(cells.items()):
        def rank(r: dict[str, Any], key: tuple[str, str] = key) -> tuple[Any, ...]:
            failed = r.get("failed") if isinstance(r.get("failed"), int) else 0
            return (-len(seeds_of(r)), r.get("isolation") == "none",
                    text(r.get("attack")) != key[0], text(r.get("defense")) != key[1],
                    failed, text(r.get("attack")), text(r.get("defense")))
        best = min(candidates, key=rank)
        chosen[key] = best
        if len(candidates) > 1:
            notes.append(f"{key[0]} x {key[1]}: {len(candidates)} groups; shown: "
                         f"{text(best.get('attack'))} x {text(best.get('defense'))} "
                         f"({len(seeds_of(best))} seeds)")
    return chosen, notes
