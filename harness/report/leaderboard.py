"""Aggregate cell results into the leaderboard JSON (DESIGN section 7).

Groups are everything that determines a result except the seed: each component's label
(a stack names its members, ``pad_bucket+rounding``) and parameters (a sweep's variants
are separate groups, shown as ``jitter{scale=0.25}``), isolation and the threat model
(``threat.num_exits``, ``threat.architecture``, ``pool``; cells written before they were
recorded count as granted/granted with pool ``same``). Each group has the mean and a 95% Student-t interval of
every metric over its seeds (no interval for one seed) and its cells' config hashes.
Defenses are ranked per victim and threat model by their *worst case*: the highest mean
``exit_agreement`` any real (non-reference) attack reaches against them, adaptive
variants included (lower is a better defense), with the defense's costs and leakage as
means over all its cells in that scenario. Attacks are ranked per victim and threat
model by mean ``exit_agreement`` on the undefended victim (defense ``none``), each
beside its victim's replica ceiling (:mod:`harness.report.ceiling`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema

from harness import __version__
from harness.errors import OutputDirError
from harness.report.ceiling import ceiling_entries, ceiling_row, load_ceilings
from harness.report.schema import SCHEMA_VERSION, leaderboard_schema
from harness.report.stats import mean_ci
from harness.run.atomic import write_json_atomic
from harness.run.results import load_result
from harness.stages import PROTOCOL_VERSION

COST_METRICS = ("benign_accuracy_drop", "benign_refusal_rate", "latency_overhead_p50",
                "latency_overhead_p99", "compute_overhead", "speedup_retained")
LEAKAGE_METRICS = ("leakage_bits", "bayes_exit_accuracy", "chance_exit_accuracy",
                   "leakage_bits_intended", "bayes_exit_accuracy_intended",
                   "chance_exit_accuracy_intended")
"""A defense's costs and leakage: means over all its cells in a scenario (every attack
and seed), with 95% intervals; they come from the benign clients, so attacks share them."""
KINDS = ("victim", "defense", "attack")


def load_results(out: Path) -> list[dict[str, Any]]:
    return [r for p in sorted((Path(out) / "cells").rglob("*.json"))
            if (r := load_result(p)) is not None]


GRANTED = {"num_exits": "granted", "architecture": "granted", "pool": "same"}
"""The threat model of a cell that does not record one (written before it was a grid key;
``pool`` is recorded only when it is not ``same``)."""


def threat_of(result: dict[str, Any]) -> dict[str, str]:
    """A result's threat settings; granted/granted, pool ``same``, for results that predate them."""
    recorded = (result.get("cell") or {}).get("threat") or {}
    return {k: str(recorded.get(k, v)) for k, v in GRANTED.items()}


def isolation_of(result: dict[str, Any]) -> str:
    """How a result's plugins were isolated; ``none`` (debugging) is never ranked."""
    return str((result.get("cell") or {}).get("isolation", "none"))


def _component_key(result: dict[str, Any], kind: str) -> tuple[str, str]:
    """(label, canonical params) of one component of a result (label: its name when the
    result predates labels)."""
    comp = result["components"][kind]
    return (str(comp.get("label") or comp["name"]),
            json.dumps(comp.get("params", {}), sort_keys=True, separators=(",", ":")))


def _display_names(keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Labels, with the differing parameters appended where one label has several sets."""
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for label, params in sorted(set(keys)):
        by_label[label].append(json.loads(params))
    names = {}
    for label, params in sorted(set(keys)):
        variants = by_label[label]
        if len(variants) == 1:
            names[(label, params)] = label
            continue
        mine = json.loads(params)
        differ = sorted({k for v in variants for k in set(v) | set(mine)
                         if v.get(k) != mine.get(k)})
        names[(label, params)] = label + "{" + ",".join(
            f"{k}={json.dumps(mine.get(k), separators=(',', ':'))}" for k in differ) + "}"
    return names


def aggregate(results: list[dict[str, Any]], reference_attacks: set[str],
              ceilings: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Groups = everything that determines a result but the seed: each component's label
    and parameters, isolation and threat model; then the rankings, and each victim's
    replica ceiling from ``ceilings`` (replica-ceiling files; none -> ``missing``)."""
    groups: dict[tuple[Any, ...], list[dict]] = defaultdict(list)
    for r in results:
        comps = tuple(_component_key(r, k) for k in KINDS)
        groups[(*comps, isolation_of(r), *threat_of(r).values())].append(r)
    names = {k: _display_names([key[i] for key in groups]) for i, k in enumerate(KINDS)}
    rows = []
    for key, rs in sorted(groups.items()):
        comps, (isolation, *threat) = key[:3], key[3:]
        ok = [r for r in rs if r["status"] == "ok"]
        metric_names = sorted({m for r in ok for m in r["metrics"]})
        attack_name = rs[0]["components"]["attack"]["name"]
        rows.append({
            **{k: names[k][c] for k, c in zip(KINDS, comps, strict=True)},
            "threat": dict(zip(GRANTED, threat, strict=True)),
            "reference": attack_name in reference_attacks, "isolation": isolation,
            "seeds": sorted(r["seed"] for r in ok), "failed": len(rs) - len(ok),
            "config_hashes": sorted(r["config_hash"] for r in rs),
            "metrics": {m: mean_ci([r["metrics"].get(m) for r in ok]) for m in metric_names},
            "_cells": ok,
        })
    ranked = [r for r in rows if r["isolation"] != "none"]
    victim_keys = {key[0] for key in groups}
    ceiling = ceiling_entries({k: names["victim"][k] for k in victim_keys}, ceilings or [])
    board = {"groups": rows, "defense_ranking": _rank_defenses(ranked),
             "attack_ranking": _rank_attacks(ranked, ceiling),
             "replica_ceiling": ceiling,
             "cells": {"ok": sum(r["status"] == "ok" for r in results),
                       "failed": sum(r["status"] != "ok" for r in results)}}
    for row in rows:
        del row["_cells"]
    return board


def _headline(row: dict[str, Any]) -> float | None:
    return row["metrics"].get("exit_agreement", {}).get("mean")


def _scenarios(rows: list[dict[str, Any]]) -> list[tuple[str, tuple[str, ...]]]:
    """(victim, threat settings) pairs in a stable order: each is ranked on its own."""
    return sorted({(r["victim"], tuple(r["threat"].values())) for r in rows})


def _in_scenario(row: dict[str, Any], victim: str, threat: tuple[str, ...]) -> bool:
    return row["victim"] == victim and tuple(row["threat"].values()) == threat


def _rank_defenses(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario, defenses by their worst case over real attacks (adaptive ones
    included; reference attacks never count), with their costs and leakage."""
    ranked = []
    for victim, threat in _scenarios(rows):
        scenario = [r for r in rows if _in_scenario(r, victim, threat)]
        entries = []
        for defense in sorted({r["defense"] for r in scenario}):
            mine = [r for r in scenario if r["defense"] == defense]
            real = [r for r in mine if not r["reference"] and _headline(r) is not None]
            if not real:
                continue
            worst = max(real, key=_headline)
            cells = [c for r in mine for c in r["_cells"]]
            costs = {m: mean_ci([c["metrics"].get(m) for c in cells])
                     for m in (*COST_METRICS, *LEAKAGE_METRICS)
                     if any(m in c["metrics"] for c in cells)}
            entries.append({"victim": victim, "defense": defense, "threat": dict(worst["threat"]),
                            "worst_attack": worst["attack"],
                            "worst_exit_agreement": _headline(worst),
                            "worst_exit_agreement_ci95": worst["metrics"]["exit_agreement"]["ci95"],
                            "seeds": worst["seeds"], "attacks": sorted(r["attack"] for r in real),
                            "costs": {m: v["mean"] for m, v in costs.items()},
                            "costs_ci95": {m: v["ci95"] for m, v in costs.items()},
                            "cells": len(cells)})
        entries.sort(key=lambda e: (e["worst_exit_agreement"], e["defense"]))
        ranked += [{"rank": i + 1, **e} for i, e in enumerate(entries)]
    return ranked


def _rank_attacks(rows: list[dict[str, Any]],
                  ceiling: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario, attacks by mean exit agreement on the undefended victim, each beside
    the victim's replica ceiling (None where it is not available)."""
    ceil = {e["victim"]: e["metrics"] for e in ceiling}
    ranked = []
    for victim, threat in _scenarios(rows):
        mine = ceil.get(victim, {})
        entries = [{"victim": victim, "attack": r["attack"], "threat": dict(r["threat"]),
                    "reference": r["reference"],
                    "exit_agreement": _headline(r),
                    "exit_kappa": r["metrics"].get("exit_kappa", {}).get("mean"),
                    "efficiency_gap": r["metrics"].get("efficiency_gap", {}).get("mean"),
                    "fidelity": r["metrics"].get("fidelity", {}).get("mean"),
                    "ceiling_exit_agreement": mine.get("exit_agreement", {}).get("mean"),
                    "ceiling_fidelity": mine.get("fidelity", {}).get("mean")}
                   for r in rows if _in_scenario(r, victim, threat) and r["defense"] == "none"
                   and _headline(r) is not None]
        entries.sort(key=lambda e: (-e["exit_agreement"], e["attack"]))
        ranked += [{"rank": i + 1, **e} for i, e in enumerate(entries)]
    return ranked


def threat_label(threat: dict[str, str]) -> str:
    """A short marker of what a row's threat model hides and of another pool ('' when
    everything is granted and the pool is the victim dataset's own)."""
    hidden = [{"num_exits": "exits", "architecture": "arch"}.get(k, k)
              for k, v in threat.items() if v == "hidden"]
    pool = threat.get("pool", "same")
    return ((f" [hidden: {','.join(hidden)}]" if hidden else "")
            + (f" [pool: {pool}]" if pool != "same" else ""))


def build_leaderboard(out: Path, reference_attacks: set[str]) -> dict[str, Any]:
    """Aggregate every result under ``out/cells``, validate, write ``out/leaderboard.json``."""
    board = {"schema_version": SCHEMA_VERSION, "harness_version": __version__,
             "protocol_version": PROTOCOL_VERSION,
             "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
             "headline": "exit_agreement",
             **aggregate(load_results(out), reference_attacks, load_ceilings(out))}
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
    for entry in board.get("replica_ceiling") or []:  # beside every attack: the ceiling
        name, means = ceiling_row(entry)
        vals = [f"{means[c]:14.3f}" if means.get(c) is not None else f"{'n/a':>14}"
                for c in cols]
        lines.append(f"{entry['victim']:14} {'-':14} {name:{width}} " + " ".join(vals))
    return "\n".join(lines)


def _cell(value: Any, width: int = 8, digits: int = 3) -> str:
    return f"{value:{width}.{digits}f}" if isinstance(value, int | float) else f"{'n/a':>{width}}"


def format_defense_table(board: dict[str, Any]) -> str:
    """Defenses per scenario: worst case over real attacks, leakage against the served and
    the intended exit (Bayes accuracy beside chance), and the benign clients' costs."""
    ranking = board["defense_ranking"]
    if not ranking:
        return ""
    width = max(16, *(len(e["defense"]) for e in ranking))
    attack_width = max(12, *(len(e["worst_attack"]) for e in ranking))
    cols = ("worst EA", "bits", "bits int", "bayes", "chance", "acc drop", "refused",
            "lat p50", "lat p99", "compute", "speedup")
    lines = []
    for victim, threat in sorted({(e["victim"], tuple(e["threat"].values())) for e in ranking}):
        lines.append(f"defenses on {victim}{threat_label(dict(zip(GRANTED, threat, strict=True)))}"
                     " (worst case over real attacks; costs and leakage: mean over the "
                     "defense's cells)")
        lines.append(f"{'#':>2} {'defense':{width}} {'worst attack':{attack_width}} "
                     + " ".join(f"{c:>8}" for c in cols))
        for e in ranking:
            if e["victim"] != victim or tuple(e["threat"].values()) != threat:
                continue
            c = e["costs"]
            vals = [e["worst_exit_agreement"], c.get("leakage_bits"),
                    c.get("leakage_bits_intended"), c.get("bayes_exit_accuracy"),
                    c.get("chance_exit_accuracy"), c.get("benign_accuracy_drop"),
                    c.get("benign_refusal_rate"), c.get("latency_overhead_p50"),
                    c.get("latency_overhead_p99"), c.get("compute_overhead"),
                    c.get("speedup_retained")]
            lines.append(f"{e['rank']:>2} {e['defense']:{width}} {e['worst_attack']:{attack_width}} "
                         + " ".join(_cell(v) for v in vals))
    return "\n".join(lines)
