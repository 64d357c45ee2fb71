"""Plain-text tables of a leaderboard (``harness leaderboard show``, ``harness run``).

Every column is as wide as its widest entry: names, variants and scenarios are never
cut. Numbers show three decimals; ``n/a`` marks a value that does not exist (a metric
an attack does not report, an interval of one seed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.board.groups import GRANTED
from harness.board.replica_agreement import replica_row, replica_section, with_replica_names

GROUP_METRICS = ("exit_agreement", "exit_kappa", "fidelity", "efficiency_gap",
                 "exit_estimation_accuracy")


def threat_label(threat: dict[str, str]) -> str:
    """A short marker of what a row's threat model hides and of another pool ('' when
    everything is granted and the pool is the victim dataset's own)."""
    hidden = [{"num_exits": "exits", "architecture": "arch"}.get(k, k)
              for k, v in threat.items() if v == "hidden"]
    pool = threat.get("pool", "same")
    return ((f" [hidden: {','.join(hidden)}]" if hidden else "")
            + (f" [pool: {pool}]" if pool != "same" else ""))


def num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and value is not None \
        else "n/a"


def interval(ci: Sequence[Any] | None) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return "n/a"
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def render(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    """Columns padded to their widest cell; columns from ``numeric_from`` right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i >= numeric_from else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def group_name(row: dict[str, Any]) -> str:
    return (row["attack"] + (" (ref)" if row["reference"] else "")
            + (f" (unranked: {row['unranked']})" if row.get("unranked") else "")
            + threat_label(row.get("threat", GRANTED))
            + (f" {{{row['variant']}}}" if row.get("variant") else ""))


def format_table(board: dict[str, Any]) -> str:
    """Every group's headline metrics (means over seeds), then each victim's replica agreement."""
    rows = []
    for row in board["groups"]:
        means = [num(row["metrics"].get(c, {}).get("mean")) for c in GROUP_METRICS]
        fail = f"{row['failed']} failed" if row["failed"] else ""
        rows.append([row.get("scenario", row["victim"]), row["defense"], group_name(row),
                     str(len(row["seeds"])), *means, fail])
    for entry in replica_section(board):
        name, means = replica_row(entry)
        rows.append([entry["victim"], "-", name, str(entry.get("n", 0)),
                     *[num(means.get(c)) for c in GROUP_METRICS], ""])
    return render(["victim", "defense", "attack", "n", *GROUP_METRICS, ""], rows,
                  numeric_from=3)


DEFENSE_COLUMNS = (("bits", "leakage_bits"), ("bits int", "leakage_bits_intended"),
                   ("bayes", "bayes_exit_accuracy"), ("chance", "chance_exit_accuracy"),
                   ("acc drop", "benign_accuracy_drop"), ("refused", "benign_refusal_rate"),
                   ("lat p50", "latency_overhead_p50"), ("lat p99", "latency_overhead_p99"),
                   ("compute", "compute_overhead"), ("speedup", "speedup_retained"))


def _scenarios(entries: list[dict[str, Any]]) -> list[str]:
    return sorted({e.get("scenario", e["victim"]) + threat_label(e.get("threat", GRANTED))
                   for e in entries})


def _in(entry: dict[str, Any], scenario: str) -> bool:
    return entry.get("scenario", entry["victim"]) + threat_label(
        entry.get("threat", GRANTED)) == scenario


PROVISIONAL_NOTE = "provisional: attack below capacity"
"""Said of a rank whose smallest slack over real attacks exceeds 0.05
(:data:`harness.board.ranking.PROVISIONAL_SLACK`)."""


def format_defense_table(board: dict[str, Any]) -> str:
    """Defenses per scenario: the ranked ones by worst case, then those listed apart
    (incomplete, over the cost budget) with why; leakage and the benign clients' costs."""
    ranking = board["defense_ranking"]
    if not ranking:
        return ""
    budget = board.get("cost_budget") or {}
    out = []
    for scenario in _scenarios(ranking):
        deployments = sorted({str(e["deployment"]) for e in ranking
                              if _in(e, scenario) and e.get("deployment")})
        out.append(f"defenses on {scenario}"
                   + (f" (deployment {', '.join(deployments)})" if deployments else "")
                   + ": worst case over real attacks (lower is better); tiers: the seeds "
                   "cannot tell a tier's members apart at 95% (per-seed worst case, paired); "
                   "costs and leakage are means over the defense's cells; cost budget "
                   f"{', '.join(f'{k} {v:g}' for k, v in budget.items()) or 'n/a'}")
        rows = []
        for e in (e for e in ranking if _in(e, scenario)):
            status = e.get("status", "ranked")
            why = {"ranked": "", "incomplete": "incomplete: " + "; ".join(
                [f"missing {', '.join(e.get('missing_attacks', []))}"] * bool(
                    e.get("missing_attacks"))
                + [f"failed {', '.join(e.get('failed_attacks', []))}"] * bool(
                    e.get("failed_attacks"))),
                "over_budget": "over budget: " + "; ".join(e.get("over_budget", []))}[status]
            if e.get("provisional"):
                why = "; ".join(filter(None, [why, PROVISIONAL_NOTE]))
            if e.get("no_better_than_none"):
                why = "; ".join(filter(None, [why, "no better than none"]))
            vs_none = e.get("vs_none") or {}
            rows.append([str(e["rank"]) if e.get("rank") else "-",
                         str(e["tier"]) if e.get("tier") else "-", e["defense"],
                         e["worst_attack"], num(e["worst_exit_agreement"]),
                         interval(e.get("worst_exit_agreement_ci95")),
                         num(vs_none.get("mean")), interval(vs_none.get("ci95")),
                         *[num(e["costs"].get(m)) for _, m in DEFENSE_COLUMNS],
                         num(e.get("min_slack")), "yes" if e.get("pareto") else "", why])
        out.append(render(["#", "tier", "defense", "worst attack", "worst EA", "95% CI (seeds)",
                           "worst - none", "95% CI (paired)",
                           *[c for c, _ in DEFENSE_COLUMNS], "min slack", "pareto", "note"],
                          rows, numeric_from=4))
        out.append("")
    return "\n".join(out).rstrip()


def format_attack_table(board: dict[str, Any]) -> str:
    """Attacks per scenario on the undefended victim, beside the replica agreement."""
    ranking = board.get("attack_ranking") or []
    if not ranking:
        return ""
    out = []
    ranking = [with_replica_names(e) for e in ranking]
    for scenario in _scenarios(ranking):
        out.append(f"attacks on {scenario}, undefended (mean over seeds)")
        rows = [[str(e["rank"]), e["attack"] + (" (ref)" if e["reference"] else ""),
                 str(len(e.get("seeds", []))), num(e["exit_agreement"]),
                 interval(e.get("exit_agreement_ci95")), interval(e.get("bootstrap_ci95")),
                 num(e.get("exit_kappa")), num(e.get("fidelity")), num(e.get("efficiency_gap")),
                 num(e.get("replica_exit_agreement"))]
                for e in ranking if _in(e, scenario)]
        out.append(render(["#", "attack", "n", "EA", "95% CI (seeds)", "95% CI (test samples)",
                           "kappa", "fidelity", "eff. gap", "replica EA"], rows, numeric_from=2))
        out.append("")
    return "\n".join(out).rstrip()


def format_paired(board: dict[str, Any], kind: str) -> str:
    """Paired differences of exit agreement on shared seeds (``attack`` or ``defense``)."""
    diffs = [d for d in board.get("paired_differences") or [] if d["kind"] == kind]
    if not diffs:
        return ""
    title = ("attack - best attack, undefended" if kind == "attack"
             else "defense - none, under the same attack")
    rows = [[d.get("scenario", d["victim"]), d["a"], d["b"],
             d.get("attack") or d.get("defense") or "", str(d["n"]), num(d["mean"]),
             interval(d["ci95"])] for d in diffs]
    return f"paired differences of exit agreement ({title}; 95% t-interval over shared seeds)\n" \
        + render(["scenario", "a", "b", "under" if kind == "attack" else "attack", "n",
                  "a - b", "95% CI"], rows, numeric_from=4)


def format_remote(board: dict[str, Any]) -> str:
    """Remote-attack rows (``harness score``): apart, never ranked."""
    rows = [[e["victim"], e["attack"], *(num(e["metrics"].get(m)) for m in REMOTE_COLUMNS),
             str(e.get("server") or "n/a"), e["file"]]
            for e in board.get("remote_attacks") or []]
    if not rows:
        return ""
    return ("remote attacks (harness attack --oracle, scored offline by harness score; not "
            "ranked: no capacity, no slack, the operator's deployment)\n"
            + render(["victim", "attack", *REMOTE_COLUMNS, "server", "score file"], rows,
                     numeric_from=2))


REMOTE_COLUMNS = ("exit_agreement", "exit_kappa", "fidelity", "efficiency_gap")


def format_board(board: dict[str, Any]) -> str:
    """Everything ``harness leaderboard show`` prints."""
    parts = [format_defense_table(board), format_attack_table(board), format_remote(board),
             format_paired(board, "attack"), format_paired(board, "defense"),
             "all groups (mean over seeds)\n" + format_table(board)]
    return "\n\n".join(p for p in parts if p)
