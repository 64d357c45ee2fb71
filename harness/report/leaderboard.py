"""Aggregate cell results into the leaderboard JSON (DESIGN section 7).

Groups are (victim, defense, attack, threat model) over seeds: mean and a 95% Student-t
interval of every metric. The threat model (``threat.num_exits``, ``threat.architecture``)
is part of the key because hiding what the attacker knows changes what it can steal;
cells written before it was recorded count as granted/granted (what they ran under).
Defenses are ranked per victim and threat model by their *worst case*: the highest mean
``exit_agreement`` any real (non-reference) attack reaches against them (lower is a
better defense), with the defense's costs beside it. Attacks are ranked per victim and
threat model by mean ``exit_agreement`` on the undefended victim (defense ``none``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
from scipy import stats

from harness import __version__
from harness.errors import OutputDirError
from harness.report.schema import SCHEMA_VERSION, leaderboard_schema
from harness.run.atomic import write_json_atomic
from harness.run.results import load_result
from harness.stages import PROTOCOL_VERSION

COST_METRICS = ("benign_accuracy_drop", "latency_overhead_p50", "latency_overhead_p99",
                "compute_overhead", "speedup_retained", "leakage_bits", "bayes_exit_accuracy")


def mean_ci(values: list[float]) -> dict[str, Any]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "ci95": [None, None], "n": 0}
    arr = np.asarray(vals, dtype=np.float64)
    mean = float(arr.mean())
    if len(arr) < 2:
        return {"mean": mean, "ci95": [mean, mean], "n": 1}
    half = float(stats.t.ppf(0.975, len(arr) - 1) * arr.std(ddof=1) / math.sqrt(len(arr)))
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": len(arr)}


def load_results(out: Path) -> list[dict[str, Any]]:
    return [r for p in sorted((Path(out) / "cells").rglob("*.json"))
            if (r := load_result(p)) is not None]


GRANTED = {"num_exits": "granted", "architecture": "granted"}
"""The threat model of a cell that does not record one (written before it was a grid key)."""


def threat_of(result: dict[str, Any]) -> dict[str, str]:
    """A result's threat settings; granted/granted for results that predate them."""
    recorded = (result.get("cell") or {}).get("threat") or {}
    return {k: str(recorded.get(k, v)) for k, v in GRANTED.items()}


def isolation_of(result: dict[str, Any]) -> str:
    """How a result's plugins were isolated; ``none`` (debugging) is never ranked."""
    return str((result.get("cell") or {}).get("isolation", "none"))


def aggregate(results: list[dict[str, Any]], reference_attacks: set[str]) -> dict[str, Any]:
    groups: dict[tuple[str, ...], list[dict]] = defaultdict(list)
    for r in results:
        names = tuple(r["components"][k]["name"] for k in ("victim", "defense", "attack"))
        groups[(*names, isolation_of(r), *threat_of(r).values())].append(r)
    rows = []
    for (victim, defense, attack, isolation, *threat), rs in sorted(groups.items()):
        ok = [r for r in rs if r["status"] == "ok"]
        names = sorted({m for r in ok for m in r["metrics"]})
        rows.append({
            "victim": victim, "defense": defense, "attack": attack,
            "threat": dict(zip(GRANTED, threat, strict=True)),
            "reference": attack in reference_attacks, "isolation": isolation,
            "seeds": sorted(r["seed"] for r in ok), "failed": len(rs) - len(ok),
            "metrics": {m: mean_ci([r["metrics"].get(m) for r in ok]) for m in names},
        })
    ranked = [r for r in rows if r["isolation"] != "none"]
    return {"groups": rows, "defense_ranking": _rank_defenses(ranked),
            "attack_ranking": _rank_attacks(ranked),
            "cells": {"ok": sum(r["status"] == "ok" for r in results),
                      "failed": sum(r["status"] != "ok" for r in results)}}


def _headline(row: dict[str, Any]) -> float | None:
    return row["metrics"].get("exit_agreement", {}).get("mean")


def _scenarios(rows: list[dict[str, Any]]) -> list[tuple[str, tuple[str, ...]]]:
    """(victim, threat settings) pairs in a stable order: each is ranked on its own."""
    return sorted({(r["victim"], tuple(r["threat"].values())) for r in rows})


def _in_scenario(row: dict[str, Any], victim: str, threat: tuple[str, ...]) -> bool:
    return row["victim"] == victim and tuple(row["threat"].values()) == threat


def _rank_defenses(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ranked = []
    for victim, threat in _scenarios(rows):
        scenario = [r for r in rows if _in_scenario(r, victim, threat)]
        entries = []
        for defense in sorted({r["defense"] for r in scenario}):
            real = [r for r in scenario if r["defense"] == defense
                    and not r["reference"] and _headline(r) is not None]
            if not real:
                continue
            worst = max(real, key=_headline)
            costs = {m: worst["metrics"][m]["mean"] for m in COST_METRICS if m in worst["metrics"]}
            entries.append({"victim": victim, "defense": defense, "threat": dict(worst["threat"]),
                            "worst_attack": worst["attack"],
                            "worst_exit_agreement": _headline(worst), "costs": costs})
        entries.sort(key=lambda e: (e["worst_exit_agreement"], e["defense"]))
        ranked += [{"rank": i + 1, **e} for i, e in enumerate(entries)]
    return ranked


def _rank_attacks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ranked = []
    for victim, threat in _scenarios(rows):
        entries = [{"victim": victim, "attack": r["attack"], "threat": dict(r["threat"]),
                    "reference": r["reference"],
                    "exit_agreement": _headline(r),
                    "exit_kappa": r["metrics"].get("exit_kappa", {}).get("mean"),
                    "efficiency_gap": r["metrics"].get("efficiency_gap", {}).get("mean"),
                    "fidelity": r["metrics"].get("fidelity", {}).get("mean")}
                   for r in rows if _in_scenario(r, victim, threat) and r["defense"] == "none"
                   and _headline(r) is not None]
        entries.sort(key=lambda e: (-e["exit_agreement"], e["attack"]))
        ranked += [{"rank": i + 1, **e} for i, e in enumerate(entries)]
    return ranked


def threat_label(threat: dict[str, str]) -> str:
    """A short marker of what a row's threat model hides ('' when everything is granted)."""
    hidden = [{"num_exits": "exits", "architecture": "arch"}.get(k, k)
              for k, v in threat.items() if v == "hidden"]
    return f" [hidden: {','.join(hidden)}]" if hidden else ""


def build_leaderboard(out: Path, reference_attacks: set[str]) -> dict[str, Any]:
    """Aggregate every result under ``out/cells``, validate, write ``out/leaderboard.json``."""
    board = {"schema_version": SCHEMA_VERSION, "harness_version": __version__,
             "protocol_version": PROTOCOL_VERSION,
             "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
             "headline": "exit_agreement", **aggregate(load_results(out), reference_attacks)}
    jsonschema.validate(board, leaderboard_schema())
    target = Path(out) / "leaderboard.json"
    try:
        write_json_atomic(target, board)
    except OSError as exc:
        raise OutputDirError(f"cannot write {target} ({exc.strerror or exc}); make the folder "
                             "writable or copy the results elsewhere") from None
    return board


def format_table(board: dict[str, Any]) -> str:
    """A plain-text table of every group's headline metrics (hidden threat settings marked)."""
    cols = ("exit_agreement", "exit_kappa", "fidelity", "efficiency_gap",
            "exit_estimation_accuracy")
    names = [row["attack"] + (" (ref)" if row["reference"] else "")
             + (" (not isolated)" if row.get("isolation") == "none" else "")
             + threat_label(row.get("threat", GRANTED)) for row in board["groups"]]
    width = max([22, *map(len, names)])
    lines = [f"{'victim':14} {'defense':14} {'attack':{width}} "
             + " ".join(f"{c[:14]:>14}" for c in cols)]
    for row, name in zip(board["groups"], names, strict=True):
        vals = []
        for c in cols:
            m = row["metrics"].get(c, {}).get("mean")
            vals.append(f"{m:14.3f}" if m is not None else f"{'-':>14}")
        fail = f"  [{row['failed']} failed]" if row["failed"] else ""
        lines.append(f"{row['victim']:14} {row['defense']:14} {name:{width}} " + " ".join(vals) + fail)
    return "\n".join(lines)
