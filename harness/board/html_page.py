"""The leaderboard's static ``index.html``: tables built from ``leaderboard.json``.

One self-contained file: inline CSS, a small inline vanilla-JS sorter (click or Enter on a
header: numeric when every value of the column is a number, else alphabetic; ``n/a`` last
either way; a second click reverses), images by relative path, and a Content Security
Policy that allows no network resource at all and only this page's own script (by hash),
so a string that slipped through escaping still could not run. Every string from the
JSON goes through :func:`html.escape`: names and parameters come from third-party plugins.
"""

from __future__ import annotations

import base64
import hashlib
import json
from html import escape
from typing import Any

from harness.board.board_view import (
    as_dict,
    as_list,
    cost_mean,
    groups,
    num,
    scenario_of,
    seeds_of,
    stat,
    text,
    threat_text,
)
from harness.board.html_tables import SORTER_JS, STYLE, fmt_num, interval, table, td
from harness.board.replica_agreement import replica_section, with_replica_names
from harness.board.tables import PROVISIONAL_NOTE

KNOWN_TOP = {"groups", "defense_ranking", "attack_ranking", "replica_agreement", "replica_ceiling",
             "paired_differences", "remote_attacks",
             "schema_version", "harness_version", "protocol_version", "generated_at", "headline",
             "command", "cells", "cost_budget"}
GROUP_METRICS = ("exit_agreement", "fidelity", "efficiency_gap")
COSTS = ("leakage_bits", "bayes_exit_accuracy", "chance_exit_accuracy", "benign_accuracy_drop",
         "benign_refusal_rate", "latency_overhead_p50", "latency_overhead_p99", "compute_overhead",
         "speedup_retained")


def build_page(board: dict[str, Any], images: list[tuple[str, str]], notes: list[str]) -> str:
    """The page: provenance, plots (``images``: relative src and caption), rankings, groups,
    replica agreement, paired differences, exit confusion, and the render ``notes``."""
    script_hash = base64.b64encode(hashlib.sha256(SORTER_JS.encode()).digest()).decode()
    csp = (f"default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
           f"script-src 'sha256-{script_hash}'")
    sections = [
        ("provenance", "Provenance", _provenance(board)),
        ("plots", "Plots", _plots(images)),
        ("defenses", "Defense ranking", _defense_rankings(board)),
        ("attacks", "Attack ranking (undefended victims)", _attack_rankings(board)),
        ("all-groups", "All groups", _groups(board)),
        ("replicas", "Replica agreement", _replica_agreement(board)),
        ("paired", "Paired differences", _paired(board)),
        ("confusion", "Exit confusion of the stolen strategy", _confusion(board)),
        ("notes", "Render notes", _notes(notes)),
    ]
    nav = " · ".join(f'<a href="#{sid}">{escape(title)}</a>' for sid, title, _ in sections)
    body = "\n".join(f'<section id="{sid}"><h2>{escape(title)}</h2>\n{html}\n</section>'
                     for sid, title, html in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>Leaderboard: output-strategy stealing on multi-exit networks</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>Leaderboard: output-strategy stealing on multi-exit networks</h1>\n"
            f'<p class="lead">Headline metric: <b>{escape(text(board.get("headline", "exit_agreement")))}'
            f"</b> (fraction of test inputs where the stolen model exits where the victim does; "
            f"lower is a better defense). Click a column header to sort.</p>\n"
            f"<nav>{nav}</nav>\n{body}\n<script>{SORTER_JS}</script>\n</body>\n</html>\n")


def _kv(rows: list[tuple[str, Any]], table_id: str) -> str:
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(text(v))}</td></tr>" for k, v in rows)
    return f'<table class="kv" id="{table_id}"><tbody>{cells}</tbody></table>'


def _secret_modes(board: dict[str, Any]) -> str:
    """The secret modes of the board's groups; public mode is marked, since its victims
    can be rebuilt by any plugin from the public recipe and seed."""
    modes = sorted({str(as_dict(row.get("key")).get("secret", "unrecorded"))
                    for _, row in groups(board)})
    marks = {"public": "public (victims rebuildable from public recipes; for reproduction)"}
    return ", ".join(marks.get(m, m) for m in modes) or "n/a"


def _provenance(board: dict[str, Any]) -> str:
    command = board.get("command")
    if isinstance(command, list) and all(isinstance(c, str) for c in command):
        command = " ".join(command)
    cells = as_dict(board.get("cells"))
    rows = [("harness version", board.get("harness_version")),
            ("schema version", board.get("schema_version")),
            ("protocol version", board.get("protocol_version")),
            ("generated at", board.get("generated_at")),
            ("command", command),
            ("cells ok", cells.get("ok")), ("cells failed", cells.get("failed")),
            ("groups", len(groups(board))),
            ("secret modes", _secret_modes(board)),
            ("cost budget", board.get("cost_budget"))]
    rows += [(k, v) for k, v in sorted(board.items()) if k not in KNOWN_TOP]
    return _kv(rows, "provenance-table")


def _plots(images: list[tuple[str, str]]) -> str:
    if not images:
        return "<p>No plots (see the render notes).</p>"
    return "\n".join(f'<figure><img src="{escape(src)}" alt="{escape(caption)}">'
                     f"<figcaption>{escape(caption)}</figcaption></figure>"
                     for src, caption in images)


def _by_scenario(entries: list[dict[str, Any]]) -> list[tuple[tuple[str, str], list[dict[str, Any]]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in entries:
        out.setdefault(scenario_of(e), []).append(e)
    return sorted(out.items())


def _rank_td(value: Any) -> str:
    rank = num(value)
    return td("apart", "") if rank is None else td(text(value), rank)


COST_HEADS = {"leakage_bits": "bits", "bayes_exit_accuracy": "Bayes exit acc.",
              "chance_exit_accuracy": "chance", "benign_accuracy_drop": "acc. drop",
              "benign_refusal_rate": "refused", "latency_overhead_p50": "latency p50",
              "latency_overhead_p99": "latency p99", "compute_overhead": "compute",
              "speedup_retained": "speedup kept"}
"""Short headers of the cost columns, so the table fits 1400 px without scrolling."""


def _paired_text(diff: Any) -> tuple[str, float | None]:
    """``-0.210 [-0.300, -0.120]`` of a paired difference (text, mean for sorting)."""
    diff = as_dict(diff)
    mean = num(diff.get("mean"))
    if mean is None:
        return "n/a", None
    return f"{mean:+.3f} {interval(diff.get('ci95'), diff.get('n'))}", mean


def _status_cell(e: dict[str, Any]) -> str:
    failed = [text(a) for a in as_list(e.get("failed_attacks"))]
    missing = [text(a) for a in as_list(e.get("missing_attacks"))]
    over = [text(o) for o in as_list(e.get("over_budget"))]
    notes = ([f"not run against: {', '.join(missing)}"] * bool(missing)
             + [f"failed: {', '.join(failed)}"] * bool(failed)
             + [f"over budget: {'; '.join(over)}"] * bool(over)
             + ["Pareto front"] * (e.get("pareto") is True))
    complete = ("complete" if e.get("complete") is True
                else "incomplete" if e.get("complete") is False else "complete n/a")
    budget = ("within budget" if e.get("within_budget") is True
              else "over budget" if e.get("within_budget") is False else "budget n/a")
    return td(f"{complete}, {budget}", cls="wrap", extra="; ".join(notes) or None)


def _defense_row(e: dict[str, Any], costs: tuple[str, ...]) -> str:
    worst = num(e.get("worst_exit_agreement"))
    seed_worst = as_dict(e.get("seed_worst"))
    vs_none, vs_none_mean = _paired_text(e.get("vs_none"))
    flag = e.get("no_better_than_none")
    tier_note = (f"with {text(e.get('tier_leader'))}" if e.get("tier") is not None
                 and e.get("tier_leader") != e.get("defense") else None)
    slack = num(e.get("min_slack"))
    counters = as_dict(e.get("defense_report"))
    attacks = as_list(e.get("attacks"))
    cells = [_rank_td(e.get("rank")),
             td(text(e.get("tier")), num(e.get("tier")), extra=tier_note),
             td(text(e.get("defense")), cls="wrap",
                extra=f"deployment {text(e.get('deployment'))}"),
             td(fmt_num(worst), worst, cls="wrap",
                extra=f"{text(e.get('worst_attack'))}; 95% CI "
                      f"{interval(e.get('worst_exit_agreement_ci95'))}; per-seed worst "
                      f"{fmt_num(num(seed_worst.get('mean')))}"),
             td(vs_none, vs_none_mean, cls="wrap",
                extra="no better than none" if flag is True else None),
             _status_cell(e),
             td(fmt_num(slack), slack, cls="wrap",
                extra=(f"{PROVISIONAL_NOTE}: {text(e.get('min_slack_attack'))}"
                       if e.get("provisional") is True else None))]
    for c in costs:
        value, intended = cost_mean(e.get("costs"), c), cost_mean(e.get("costs"), f"{c}_intended")
        cells.append(td(fmt_num(value), value, extra=None if intended is None
                        else f"intended {fmt_num(intended)}"))
    cells.append(td("; ".join(f"{text(k)} {fmt_num(num(v))}" for k, v in counters.items())
                    or "none reported", cls="wrap"))
    cells.append(td(text(e.get("cells")), num(e.get("cells")), cls="wrap",
                    extra=", ".join(map(text, attacks)) if attacks else None))
    cls = " apart" if num(e.get("rank")) is None else ""
    flagged = " no-better" if flag is True else ""
    return f'<tr class="entry{cls}{flagged}">{"".join(cells)}</tr>'


def _defense_rankings(board: dict[str, Any]) -> str:
    entries = [e for e in as_list(board.get("defense_ranking")) if isinstance(e, dict)]
    if not entries:
        return "<p>n/a (no defense ranking in this leaderboard)</p>"
    extra = sorted({k for e in entries for k in as_dict(e.get("costs")) if k not in COSTS
                    and k.removesuffix("_intended") not in COSTS})
    costs = (*COSTS, *extra)
    head = ["rank", "tier", "defense", "worst exit agreement", "worst case - none (paired)",
            "status", "min slack", *(COST_HEADS.get(c, c.replace("_", " ")) for c in costs),
            "defense counters", "cells (real attacks)"]
    parts = []
    for n, ((victim, threat), rows) in enumerate(_by_scenario(entries)):
        body = [_defense_row(e, costs) for e in rows]
        parts.append(f"<h3>{escape(victim)} <small>({escape(threat)})</small></h3>"
                     + table(f"defense-ranking-{n}", head, body, cls="fit"))
    return ("<p>Per victim and threat model, defenses by their worst case over real attacks "
            "(adaptive ones included; reference attacks never count). <i>intended</i> under "
            "a leakage column: the same leakage measured against the exit the victim's "
            "policy intended rather than the one that served. <i>tier</i>: defenses "
            "the seeds cannot tell apart from the tier's first member (95% paired interval "
            "of the per-seed worst case includes 0) share its tier; read tiers, not ranks. "
            "<i>worst case - none</i>: the paired per-seed worst-case difference to the "
            "undefended victim with its 95% interval; <i>no better than none</i> where that "
            "interval does not lie below 0. Costs and leakage are means over the defense's "
            "cells. <i>apart</i>: listed apart (incomplete or over the cost budget), not "
            "ranked. <i>defense counters</i>: the means of what the defense's own "
            "<code>report()</code> counted, over its cells. <i>min slack</i>: the smallest gap "
            "over real attacks between what the timing channel carried for the attack's own "
            "queries (capacity) and its exit estimation; above 0.05 the rank is provisional "
            "(every attack read less than leaked).</p>\n" + "\n".join(parts))


def _remote_attacks(board: dict[str, Any]) -> str:
    """Remote-attack rows (``harness score``), apart from the ranking."""
    entries = [e for e in as_list(board.get("remote_attacks")) if isinstance(e, dict)]
    if not entries:
        return ""
    cols = ("exit_agreement", "exit_kappa", "fidelity", "efficiency_gap", "queries_used")
    head = ["victim", "attack", *(c.replace("_", " ") for c in cols), "server", "score file"]
    body = [f"<tr>{td(text(e.get('victim')))}{td(text(e.get('attack')))}"
            + "".join(td(fmt_num(num(v)), num(v))
                      for v in (as_dict(e.get("metrics")).get(c) for c in cols))
            + f"{td(text(e.get('server')))}{td(text(e.get('file')))}</tr>" for e in entries]
    return ("<h3>Remote attacks <small>(harness attack --oracle, scored offline by "
            "<code>harness score</code>; never ranked: no capacity or slack, the operator's "
            "deployment)</small></h3>" + table("remote-attacks", head, body))


def _attack_rankings(board: dict[str, Any]) -> str:
    entries = [with_replica_names(e) for e in as_list(board.get("attack_ranking"))
               if isinstance(e, dict)]
    if not entries:
        return "<p>n/a (no attack ranking in this leaderboard)</p>" + _remote_attacks(board)
    cols = ("exit_agreement", "exit_kappa", "fidelity", "efficiency_gap",
            "replica_exit_agreement", "replica_fidelity")
    head = ["rank", "attack", "reference", *(c.replace("_", " ") for c in cols)]
    parts = []
    for n, ((victim, threat), rows) in enumerate(_by_scenario(entries)):
        body = [f'<tr>{_rank_td(e.get("rank"))}{td(text(e.get("attack")))}'
                f'{td(text(e.get("reference")))}'
                + "".join(td(fmt_num(num(e.get(c))), num(e.get(c))) for c in cols) + "</tr>"
                for e in rows]
        parts.append(f"<h3>{escape(victim)} <small>({escape(threat)})</small></h3>"
                     + table(f"attack-ranking-{n}", head, body))
    return "\n".join(parts) + _remote_attacks(board)


def _details(row: dict[str, Any]) -> str:
    info = {k: row[k] for k in ("key", "config_hashes", "victim_weights", "cells", "plugins")
            if k in row}
    if not info:
        return td("n/a")
    dump = json.dumps(info, indent=1, sort_keys=True, default=str)
    return (f'<td class="prov"><details><summary>key, hashes, cells</summary>'
            f"<pre>{escape(dump)}</pre></details></td>")


def _groups(board: dict[str, Any]) -> str:
    rows = groups(board)
    head = ["group", "victim", "defense", "attack", "threat", "isolation", "ranked", "reference",
            "seeds", "n", "failed"]
    for m in GROUP_METRICS:
        head += [f"{m.replace('_', ' ')} mean", f"{m.replace('_', ' ')} 95% CI"]
    head.append("provenance")
    body = []
    for gid, row in rows:
        seeds = seeds_of(row)
        n_value = stat(row.get("metrics"), "exit_agreement")[2]
        n_value = n_value if n_value is not None else len(seeds)
        failed = num(row.get("failed"))
        cells = [td(gid), td(text(row.get("victim"))),
                 td(text(row.get("defense"))), td(text(row.get("attack"))), td(threat_text(row)),
                 td(text(row.get("isolation"))),
                 td("yes" if not row.get("unranked") else f"no: {text(row.get('unranked'))}"),
                 td(text(row.get("reference"))),
                 td(", ".join(map(text, seeds)) if seeds else "none"), td(str(n_value), n_value),
                 td(text(row.get("failed")), failed)]
        boot = as_dict(row.get("bootstrap_ci95"))
        for m in GROUP_METRICS:
            mean, ci, n = stat(row.get("metrics"), m)
            extra = f"bootstrap {interval(boot[m])}" if m in boot else None
            cells += [td(fmt_num(mean), mean, cls="mean", data_metric=m),
                      td(interval(ci, n), extra=extra)]
        cells.append(_details(row))
        body.append(f'<tr data-group-id="{escape(gid)}">{"".join(cells)}</tr>')
    return ("<p>Every group: everything that determines a result except the seed. Means and "
            "95% Student-t intervals over seeds (none for one seed); bootstrap intervals over "
            "test samples where recorded.</p>\n" + table("groups", head, body))


def _replica_agreement(board: dict[str, Any]) -> str:
    entries = [e for e in replica_section(board) if isinstance(e, dict)]
    if not entries:
        return "<p>n/a (no replica agreement in this leaderboard)</p>"
    metrics = ("exit_agreement", "fidelity", "exit_kappa", "efficiency_gap")
    head = ["victim", "status", "n", "seeds", "victim train seed"]
    for m in metrics:
        head += [f"{m.replace('_', ' ')} mean", f"{m.replace('_', ' ')} 95% CI"]
    head.append("reason")
    body = []
    for e in entries:
        cells = [td(text(e.get("victim"))), td(text(e.get("status"))), td(text(e.get("n")), num(e.get("n"))),
                 td(", ".join(map(text, as_list(e.get("seeds")))) or "none"),
                 td(text(e.get("victim_train_seed")))]
        for m in metrics:
            mean, ci, n = stat(e.get("metrics"), m)
            cells += [td(fmt_num(mean), mean), td(interval(ci, n))]
        cells.append(td(text(e.get("reason"))))
        body.append(f"<tr>{''.join(cells)}</tr>")
    return table("replica-agreement", head, body)


def _paired(board: dict[str, Any]) -> str:
    """One row per paired difference, with what it is paired under: the attack for a
    defense - none row, the defense for an attack - best attack row (two rows that share
    a and b differ there)."""
    entries = [e for e in as_list(board.get("paired_differences")) if isinstance(e, dict)]
    if not entries:
        return "<p>n/a (no paired differences in this leaderboard)</p>"
    head = ["scenario", "kind", "a", "b", "under", "metric", "mean difference (a - b)",
            "95% CI", "n (paired seeds)"]
    body = []
    for e in entries:
        mean, n = num(e.get("mean")), num(e.get("n"))
        kind = text(e.get("kind"))
        under = (f"attack {text(e.get('attack'))}" if kind == "defense"
                 else f"defense {text(e.get('defense'))}" if kind == "attack" else "")
        body.append(f'<tr>{td(text(e.get("scenario") or e.get("victim")))}{td(kind)}'
                    f'{td(text(e.get("a")))}{td(text(e.get("b")))}{td(under)}'
                    f'{td(text(e.get("metric")))}'
                    f'{td(fmt_num(mean), mean)}{td(interval(e.get("ci95"), n))}'
                    f'{td(text(e.get("n")), n)}</tr>')
    return table("paired-differences", head, body)


def _confusion_table(matrix: Any) -> str | None:
    rows = [as_list(r) for r in as_list(matrix)]
    size = len(rows)
    if not size or any(len(r) != size or any(num(c) is None for c in r) for r in rows):
        return None
    head = "".join(f"<th>stolen {j + 1}</th>" for j in range(size))
    body = "".join(f"<tr><th>victim {i + 1}</th>" + "".join(
        f'<td class="{"diag" if i == j else ""}">{fmt_num(num(c), 0)}</td>' for j, c in enumerate(r))
        + "</tr>" for i, r in enumerate(rows))
    return (f'<table class="confusion"><thead><tr><th>exit</th>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def _confusion(board: dict[str, Any]) -> str:
    parts = []
    for gid, row in sorted(groups(board), key=lambda g: text(g[1].get("defense")) != "none"):
        html = _confusion_table(row.get("exit_confusion"))
        if html is None:
            continue
        title = (f"{text(row.get('victim'))} / {text(row.get('defense'))} / "
                 f"{text(row.get('attack'))} (group {gid})")
        is_open = " open" if text(row.get("defense")) == "none" else ""
        parts.append(f'<details class="confusion"{is_open} data-group-id="{escape(gid)}">'
                     f"<summary>{escape(title)}</summary>{html}</details>")
    if not parts:
        return "<p>n/a (no group records an exit confusion matrix)</p>"
    return ("<p>Test inputs by the victim's exit (rows) and the stolen model's exit (columns); "
            "undefended victims open.</p>\n" + "\n".join(parts))


def _notes(notes: list[str]) -> str:
    if not notes:
        return "<p>None: every plot was drawn.</p>"
    return '<ul id="render-notes">' + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"
