"""Rankings that respect cost: defenses by worst case, attacks on the undefended victim.

Defenses are ranked per scenario (a group key without defense and attack: one victim
under one budget, output, timing, backend, device class and threat model) by their worst
case: the highest mean ``exit_agreement`` any real (non-reference) attack reaches against
them, adaptive variants included; lower is better. An entry is ranked only when it is

- **complete**: every real attack run anywhere in the scenario, and every real attack
  registered in the harness that built the board (by name, whatever its parameters), has
  at least one finished cell against it and none failed (a failed or missing attack could
  be its worst case, so the entry is listed apart as ``incomplete`` with the missing
  attacks named, never silently better, however small the grid was); and
- **within the cost budget**: its mean benign accuracy drop and refusal rate are at most
  :class:`CostBudget`'s limits (a defense that refuses everything leaks nothing and is
  listed apart as ``over_budget``, not first).

Entries listed apart have ``rank`` None and say why. The Pareto front of leakage (worst
case) against the median latency overhead is marked among the complete, within-budget
entries: a defense is on it when no other is at least as good on both and better on one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from harness.board.tiers import assign_tiers, seed_worst_cases
from harness.metrics.stats import mean_ci, paired_difference

COST_METRICS = ("benign_accuracy_drop", "benign_refusal_rate", "latency_overhead_p50",
                "latency_overhead_p99", "compute_overhead", "speedup_retained")
LEAKAGE_METRICS = ("leakage_bits", "bayes_exit_accuracy", "chance_exit_accuracy",
                   "leakage_bits_intended", "bayes_exit_accuracy_intended",
                   "chance_exit_accuracy_intended")
"""A defense's costs and leakage: means over all its cells in a scenario (every attack
and seed), with 95% intervals; they come from the benign clients, so attacks share them."""


@dataclass(frozen=True)
class CostBudget:
    """The most a ranked defense may cost benign clients (means over its cells)."""

    max_accuracy_drop: float = 0.05
    max_refusal_rate: float = 0.05

    def problems(self, costs: dict[str, float | None]) -> list[str]:
        out = []
        for metric, limit in (("benign_accuracy_drop", self.max_accuracy_drop),
                              ("benign_refusal_rate", self.max_refusal_rate)):
            value = costs.get(metric)
            if value is None:
                out.append(f"{metric} unknown")
            elif value > limit:
                out.append(f"{metric} {value:.3f} > {limit:g}")
        return out

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def headline(row: dict[str, Any]) -> float | None:
    return row["metrics"].get("exit_agreement", {}).get("mean")


def by_scenario(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        out[row["scenario_id"]].append(row)
    return dict(sorted(out.items(), key=lambda kv: (kv[1][0]["scenario"], kv[0])))


def deployment_of(row: dict[str, Any]) -> str | None:
    """The timing deployment a group ran under (None where its timing mode has none)."""
    timing = row.get("key", {}).get("timing") or {}
    return (timing.get("params") or {}).get("deployment")


def _scenario_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {"victim": row["victim"], "scenario": row["scenario"],
            "scenario_id": row["scenario_id"], "threat": dict(row["threat"])}


def _seed_values(row: dict[str, Any], metric: str = "exit_agreement") -> dict[int, float | None]:
    return {c["seed"]: c["metrics"].get(metric) for c in row["_cells"]}


PROVISIONAL_SLACK = 0.05
"""A defense's rank is provisional when every real attack read more than this below what
its own observations carried (smallest ``capacity_slack`` over the real attacks)."""


def slack_fields(real: list[dict[str, Any]]) -> dict[str, Any]:
    """The smallest mean ``capacity_slack`` over real attacks, whose it is, and whether
    it makes the rank provisional (None where no attack estimates exits)."""
    slacks = [(r["metrics"]["capacity_slack"]["mean"], r["attack"]) for r in real
              if (r["metrics"].get("capacity_slack") or {}).get("mean") is not None]
    if not slacks:
        return {"min_slack": None, "min_slack_attack": None, "provisional": False}
    slack, attack = min(slacks)
    return {"min_slack": slack, "min_slack_attack": attack,
            "provisional": slack > PROVISIONAL_SLACK}


def defense_counters(cells: list[dict[str, Any]]) -> dict[str, float]:
    """The mean of each counter the defense reported (``diagnostics.defense_report``) over
    the cells that report it; non-numbers and non-finite values are left out."""
    values: dict[str, list[float]] = defaultdict(list)
    for cell in cells:
        report = (cell.get("diagnostics") or {}).get("defense_report")
        if not isinstance(report, dict):
            continue
        for name, value in report.items():
            if (isinstance(value, int | float) and not isinstance(value, bool)
                    and math.isfinite(value)):
                values[str(name)].append(float(value))
    return {name: sum(v) / len(v) for name, v in sorted(values.items())}


def _defense_entry(mine: list[dict[str, Any]], real_attacks: dict[str, str],
                   budget: CostBudget, registered: Collection[str] = ()) -> dict[str, Any] | None:
    """One defense's entry; ``real_attacks``: every real attack of the scenario (id ->
    label); ``registered``: the names of every registered real attack."""
    real = [r for r in mine if not r["reference"]]
    scored = [r for r in real if headline(r) is not None]
    if not scored:
        return None
    run = {r["attack_id"] for r in real}
    run_names = {r.get("attack_name") or r["attack"] for r in real}
    missing = sorted({name for aid, name in real_attacks.items() if aid not in run}
                     | {name for name in registered if name not in run_names})
    failed = sorted(r["attack"] for r in real if r["failed"] or headline(r) is None)
    worst = max(scored, key=headline)
    cells = [c for r in mine for c in r["_cells"]]
    costs = {m: mean_ci([c["metrics"].get(m) for c in cells])
             for m in (*COST_METRICS, *LEAKAGE_METRICS)
             if any(m in c["metrics"] for c in cells)}
    means = {m: v["mean"] for m, v in costs.items()}
    over = budget.problems(means)
    complete = not missing and not failed
    return {**_scenario_fields(worst), "defense": worst["defense"],
            "defense_id": worst["defense_id"], "defense_name": worst["defense_name"],
            "deployment": deployment_of(worst),
            "worst_attack": worst["attack"], "worst_exit_agreement": headline(worst),
            "worst_exit_agreement_ci95": worst["metrics"]["exit_agreement"]["ci95"],
            "worst_bootstrap_ci95": (worst.get("bootstrap_ci95") or {}).get("exit_agreement"),
            "seeds": worst["seeds"], "attacks": sorted(r["attack"] for r in scored),
            "complete": complete, "missing_attacks": missing, "failed_attacks": failed,
            "within_budget": not over, "over_budget": over,
            "status": "ranked" if complete and not over else
                      ("incomplete" if not complete else "over_budget"),
            "costs": means, "costs_ci95": {m: v["ci95"] for m, v in costs.items()},
            "cells": len(cells), "pareto": False, "defense_report": defense_counters(cells),
            **slack_fields(scored)}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (lower is better on both
    coordinates), ordered by point."""
    front = [i for i, (x, y) in enumerate(points)
             if not any(ox <= x and oy <= y and (ox < x or oy < y) for ox, oy in points)]
    return sorted(front, key=lambda i: points[i])


def _mark_pareto(entries: list[dict[str, Any]]) -> None:
    """Mark the ranked entries no other ranked entry dominates on (worst case, p50 overhead)."""
    pts = [e for e in entries if e["status"] == "ranked"
           and e["costs"].get("latency_overhead_p50") is not None]
    for i in pareto_front([(e["worst_exit_agreement"], e["costs"]["latency_overhead_p50"])
                           for e in pts]):
        pts[i]["pareto"] = True


def rank_defenses(rows: list[dict[str, Any]], budget: CostBudget,
                  registered: Collection[str] = ()) -> list[dict[str, Any]]:
    """Per scenario: ranked entries by worst case, then those listed apart (``registered``:
    the real attacks every ranked defense must have been run against)."""
    ranked: list[dict[str, Any]] = []
    for scenario in by_scenario(rows).values():
        real_attacks = {r["attack_id"]: r["attack"] for r in scenario if not r["reference"]}
        by_defense: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in scenario:
            by_defense[r["defense_id"]].append(r)
        entries = [e for mine in by_defense.values()
                   if (e := _defense_entry(mine, real_attacks, budget, registered)) is not None]
        _mark_pareto(entries)
        order = {"ranked": 0, "incomplete": 1, "over_budget": 2}
        entries.sort(key=lambda e: (order[e["status"]], e["worst_exit_agreement"], e["defense"]))
        rank = 0
        for e in entries:
            rank += e["status"] == "ranked"
            e["rank"] = rank if e["status"] == "ranked" else None
        assign_tiers(entries, {
            d: seed_worst_cases([r for r in mine if not r["reference"]
                                 and headline(r) is not None])
            for d, mine in by_defense.items()})
        ranked += [{"rank": e.pop("rank"), **e} for e in entries]
    return ranked


def rank_attacks(rows: list[dict[str, Any]], replicas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per scenario, attacks by mean exit agreement on the undefended victim, each beside
    the victim's replica agreement (None where it is not available)."""
    ceil = {e["victim"]: e["metrics"] for e in replicas}
    ranked = []
    for scenario in by_scenario(rows).values():
        entries = []
        for r in scenario:
            if r["defense_name"] != "none" or headline(r) is None:
                continue
            mine = ceil.get(r["victim"], {})
            entries.append({
                **_scenario_fields(r), "attack": r["attack"], "attack_id": r["attack_id"],
                "reference": r["reference"], "exit_agreement": headline(r),
                "exit_agreement_ci95": r["metrics"]["exit_agreement"]["ci95"],
                "bootstrap_ci95": (r.get("bootstrap_ci95") or {}).get("exit_agreement"),
                "seeds": r["seeds"], "failed": r["failed"],
                **{m: r["metrics"].get(m, {}).get("mean")
                   for m in ("exit_kappa", "efficiency_gap", "fidelity", "accuracy",
                             "exit_estimation_accuracy", "final_exit_fidelity")},
                "replica_exit_agreement": mine.get("exit_agreement", {}).get("mean"),
                "replica_fidelity": mine.get("fidelity", {}).get("mean")})
        entries.sort(key=lambda e: (e["reference"], -e["exit_agreement"], e["attack"]))
        ranked += [{"rank": i + 1, **e} for i, e in enumerate(entries)]
    return ranked


def paired_differences(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Exit agreement differences on the same seeds, with t-intervals over the seeds:
    each real attack against the scenario's best real attack on the undefended victim
    (``kind: attack``), and each defense against ``none`` under each attack run against
    both (``kind: defense``, negative = the defense lowers that attack's success)."""
    out: list[dict[str, Any]] = []
    for scenario in by_scenario(rows).values():
        undefended = {r["attack_id"]: r for r in scenario
                      if r["defense_name"] == "none" and headline(r) is not None}
        real = [r for r in undefended.values() if not r["reference"]]
        if real:
            best = max(real, key=headline)
            for r in sorted(real, key=lambda r: r["attack"]):
                if r is best:
                    continue
                out.append({"kind": "attack", **_scenario_fields(r), "a": r["attack"],
                            "b": best["attack"], "defense": r["defense"],
                            "metric": "exit_agreement",
                            **paired_difference(_seed_values(r), _seed_values(best))})
        for r in scenario:
            base = undefended.get(r["attack_id"])
            if r["defense_name"] == "none" or base is None or headline(r) is None:
                continue
            out.append({"kind": "defense", **_scenario_fields(r), "a": r["defense"],
                        "b": base["defense"], "attack": r["attack"], "metric": "exit_agreement",
                        **paired_difference(_seed_values(r), _seed_values(base))})
    return out
