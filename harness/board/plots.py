"""The leaderboard page's PNG plots: the defense frontier, the exit-agreement heatmaps and
the budget curves (the latency histograms live in :mod:`harness.board.latency_plot`).

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg, no pyplot and no global
backend switch) and saved without the ``Software`` metadata, so the same board gives the
same bytes. Each plot function returns a :class:`Plots`: the PNGs by file name, and a note
for every plot or point it had to leave out, and why.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.figure import Figure

from harness.board.board_view import (
    as_dict,
    as_list,
    cost_mean,
    groups,
    main_scenario,
    num,
    pick_groups,
    scenario_of,
    stat,
    text,
    threat_text,
)
from harness.board.ranking import pareto_front


@dataclass(frozen=True)
class Plots:
    """PNG bytes by file name (``plots/<name>``) and notes on what was skipped."""

    files: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    captions: dict[str, str] = field(default_factory=dict)


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG, with no metadata that changes between runs."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def safe_label(value: Any, limit: int = 48) -> str:
    """Plot text from a plugin-supplied name: ``$`` escaped (no mathtext), one line, cut."""
    s = " ".join(text(value).split()).replace("$", r"\$")
    return s if len(s) <= limit else s[: limit - 1] + "…"


def slug(name: str, taken: set[str]) -> str:
    """A file-name-safe, unique form of a victim name."""
    base = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "victim"
    base, out, i = base[:60], base[:60], 2
    while out in taken:
        out, i = f"{base}-{i}", i + 1
    taken.add(out)
    return out


def frontier_plot(board: dict[str, Any]) -> Plots:
    """``defense_frontier.png``: per scenario, each defense at (latency overhead p50,
    worst-case exit agreement); Pareto-front points joined, over-budget defenses hollow."""
    notes: list[str] = []
    panels: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in as_list(board.get("defense_ranking")):
        if not isinstance(entry, dict):
            continue
        x = cost_mean(entry.get("costs"), "latency_overhead_p50")
        y = num(entry.get("worst_exit_agreement"))
        if x is None or y is None:
            notes.append(f"defense frontier: {text(entry.get('defense'))} on "
                         f"{text(entry.get('victim'))} left out (no latency overhead p50 "
                         "or worst-case exit agreement)")
            continue
        panels.setdefault(scenario_of(entry), []).append({**entry, "_xy": (x, y)})
    if not panels:
        return Plots(notes=[*notes, "defense frontier: skipped, no defense with a latency "
                                    "overhead and a worst-case exit agreement"])
    keys = sorted(panels)
    fig = Figure(figsize=(6.4 * min(len(keys), 3), 4.8 * math.ceil(len(keys) / 3)))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(math.ceil(len(keys) / 3), min(len(keys), 3), i + 1)
        entries = panels[key]
        xy = [e["_xy"] for e in entries]
        flags = [e.get("pareto") for e in entries]
        if all(isinstance(f, bool) for f in flags):
            front = sorted((j for j, f in enumerate(flags) if f), key=lambda j: xy[j])
        else:  # over-budget defenses (refuse everything: no leak) are not on the front
            eligible = [j for j, e in enumerate(entries) if e.get("within_budget") is not False]
            front = [eligible[j] for j in pareto_front([xy[j] for j in eligible])]
        if front:
            ax.plot([xy[j][0] for j in front], [xy[j][1] for j in front], "-", color="0.4",
                    lw=1.2, zorder=1, label="Pareto front")
        for e, (x, y) in zip(entries, xy, strict=True):
            over = e.get("within_budget") is False
            incomplete = e.get("complete") is False
            ax.scatter([x], [y], s=46, zorder=2, marker="s" if incomplete else "o",
                       facecolors="none" if over else "C0", edgecolors="C3" if over else "C0")
        for (x, y), label, dy in _point_labels(entries, xy):
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, dy), fontsize=7)
        ax.set_xlabel("latency overhead p50 (benign clients)")
        ax.set_ylabel("worst-case exit agreement (real attacks)")
        ax.set_title(safe_label(key[0], 40) + ("" if key[1] == threat_text({})
                                                else f"\n{safe_label(key[1], 70)}"), fontsize=9)
        ax.grid(alpha=0.3)
        if any(e.get("within_budget") is False for e in entries):
            ax.scatter([], [], facecolors="none", edgecolors="C3", label="over cost budget")
        if any(e.get("complete") is False for e in entries):
            ax.scatter([], [], marker="s", color="C0", label="incomplete (*)")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return Plots({"defense_frontier.png": png_bytes(fig)}, notes, {
        "defense_frontier.png": "Defense trade-off: latency overhead (p50, benign clients) "
        "against the worst-case exit agreement over real attacks; lower-left is better. "
        "Pareto-front points (among defenses within the cost budget) are joined; hollow "
        "markers exceed the cost budget; squares "
        "marked * are incomplete (an attack failed)."})


def _point_labels(entries: list[dict[str, Any]], xy: list[tuple[float, float]]
                  ) -> list[tuple[tuple[float, float], str, int]]:
    """One label per position (defenses at the same point share it), stepped vertically
    where labels would sit on top of each other."""
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    at: dict[tuple[float, float], list[str]] = {}
    for e, (x, y) in zip(entries, xy, strict=True):
        at.setdefault((round(x / span_x, 3), round(y / span_y, 3)), []).append(
            safe_label(e.get("defense"), 28) + ("*" if e.get("complete") is False else ""))
    placed: list[tuple[float, float]] = []
    out = []
    for (rx, ry), names in sorted(at.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        near = sum(abs(px - rx) < 0.12 and abs(py - ry) < 0.04 for px, py in placed)
        placed.append((rx, ry))
        out.append(((rx * span_x, ry * span_y), ", ".join(sorted(names)), 4 - 10 * near))
    return out


def heatmap_plots(board: dict[str, Any]) -> Plots:
    """``ea_heatmap_<victim>.png``: mean exit agreement, attacks x defenses, from the
    groups of each victim's main scenario (one group per cell, see ``pick_groups``)."""
    by_victim: dict[str, list[dict[str, Any]]] = {}
    for _, row in groups(board):
        by_victim.setdefault(text(row.get("victim")), []).append(row)
    files, notes, captions, taken = {}, [], {}, set()
    for victim, rows in sorted(by_victim.items()):
        scenario = main_scenario(rows)
        mine = [r for r in rows if threat_text(r) == scenario]
        if len(mine) < len(rows):
            notes.append(f"exit agreement heatmap {victim}: only the threat model "
                         f"{scenario} is shown ({len(rows) - len(mine)} groups of others "
                         "are in the tables)")
        chosen, choice_notes = pick_groups(mine)
        if choice_notes:
            shown = "; ".join(choice_notes[:6]) + ("; ..." if len(choice_notes) > 6 else "")
            notes.append(f"exit agreement heatmap {victim}: {len(choice_notes)} of {len(chosen)} "
                         "cells have several groups (parameter variants or isolation modes); each "
                         f"shows the group with the most seeds: {shown}")
        attacks = sorted({a for a, _ in chosen})
        refs = {a for (a, _), row in chosen.items() if row.get("reference") is True}
        defenses = sorted({d for _, d in chosen}, key=lambda d: (d != "none", d))
        values = [[stat(chosen[(a, d)].get("metrics"), "exit_agreement")[0]
                   if (a, d) in chosen else None for d in defenses] for a in attacks]
        if all(v is None for row in values for v in row):
            notes.append(f"exit agreement heatmap {victim}: skipped, no exit agreement")
            continue
        name = f"ea_heatmap_{slug(victim, taken)}.png"
        files[name] = _draw_heatmap(victim, [a + " (ref)" if a in refs else a for a in attacks],
                                    defenses, values)
        captions[name] = (f"Mean exit agreement on {victim} by attack (rows) and defense "
                          "(columns); one group per cell (the one with the most seeds where "
                          "parameter variants share a cell).")
    if not files:
        notes.append("exit agreement heatmap: skipped, no groups with exit agreement")
    return Plots(files, notes, captions)


def _draw_heatmap(victim: str, attacks: list[str], defenses: list[str],
                  values: list[list[float | None]]) -> bytes:
    grid = [[math.nan if v is None else v for v in row] for row in values]
    fig = Figure(figsize=(max(4.8, 2.2 + 0.85 * len(defenses)), max(2.8, 1.4 + 0.42 * len(attacks))))
    ax = fig.add_subplot()
    cmap = colormaps["RdYlGn_r"].with_extremes(bad="0.85")
    image = ax.imshow(grid, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, "n/a" if v is None else f"{v:.2f}", ha="center", va="center",
                    fontsize=7, color="black" if v is None or 0.25 < v < 0.8 else "white")
    ax.set_xticks(range(len(defenses)), [safe_label(d, 24) for d in defenses], rotation=40,
                  ha="right", fontsize=7)
    ax.set_yticks(range(len(attacks)), [safe_label(a, 32) for a in attacks], fontsize=7)
    ax.set_xlabel("defense")
    ax.set_title(f"exit agreement, {safe_label(victim, 40)}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    return png_bytes(fig)


def budget_plot(benchmarks_dir: Path | None) -> Plots:
    """``budget_curves.png``: exit agreement against the query budget per attack, one
    panel per defense, from ``benchmarks_dir/baseline_sweep.json`` (the baseline
    benchmark's sweep, with its 95% intervals as bands)."""
    if benchmarks_dir is None:
        return Plots(notes=["budget curves: skipped, no benchmarks folder given "
                            "(pass --benchmarks DIR holding baseline_sweep.json)"])
    path = Path(benchmarks_dir) / "baseline_sweep.json"
    try:
        sweep = as_list(as_dict(json.loads(path.read_text())).get("sweep"))
    except FileNotFoundError:
        return Plots(notes=[f"budget curves: skipped, {path} does not exist "
                            "(run benchmarks/baseline_attacks.py to make it)"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Plots(notes=[f"budget curves: skipped, {path} is unreadable ({exc})"])
    rows = [r for r in sweep if isinstance(r, dict) and num(r.get("budget")) is not None
            and num(r.get("budget")) > 0 and num(r.get("exit_agreement")) is not None]
    if not rows:
        return Plots(notes=[f"budget curves: skipped, {path} holds no sweep rows with a "
                            "budget and an exit agreement"])
    defenses = list(dict.fromkeys(text(r.get("defense")) for r in rows))
    budgets = sorted({num(r["budget"]) for r in rows})
    fig = Figure(figsize=(5.6 * len(defenses), 4.2))
    for k, defense in enumerate(defenses):
        ax = fig.add_subplot(1, len(defenses), k + 1)
        for attack in sorted({text(r.get("attack")) for r in rows}):
            pts = sorted((num(r["budget"]), num(r["exit_agreement"]),
                          as_list(r.get("exit_agreement_ci95"))) for r in rows
                         if text(r.get("defense")) == defense and text(r.get("attack")) == attack)
            if not pts:
                continue
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            line = ax.plot(xs, ys, marker="o", label=safe_label(attack, 30))[0]
            lo = [num(p[2][0]) if len(p[2]) == 2 and num(p[2][0]) is not None else p[1] for p in pts]
            hi = [num(p[2][1]) if len(p[2]) == 2 and num(p[2][1]) is not None else p[1] for p in pts]
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
        ax.set_xlabel("queries (budget)")
        ax.set_ylabel("exit agreement")
        ax.set_title(f"defense={safe_label(defense, 30)}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return Plots({"budget_curves.png": png_bytes(fig)}, [], {
        "budget_curves.png": f"Exit agreement against the query budget ({path.name}: mean "
        "over seeds, 95% interval shaded), one panel per defense."})

