"""``latency_<victim>.png``: the latency side channel as the timing attack saw it.

Per victim, one panel for the undefended victim and one per defense that declares a
stage which changes what the timing channel carries (``shape_latency`` or
``choose_exits``, recorded in the cell as ``components.defense.stages``; a plugin's
defense is found the same way as a built-in one), each from an ``exit_steal`` cell: the
histogram of the attack's query latencies, stacked by the exit that truly served each
query (``diagnostics.query_latency_histogram`` of the cell), with the exit boundaries the
attack estimated (``diagnostics.attack.estimated_boundaries_s``) as vertical lines, on a
log latency axis. Seed 0 is preferred. Cells written before the histogram existed get no
panel, and a note says so; cells written before the stages were recorded are drawn when
they name a built-in timing defense (:data:`LEGACY_TIMING_DEFENSES`).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from harness.board.board_view import as_dict, as_list, base_name, groups, num, text
from harness.board.plots import Plots, png_bytes, safe_label, slug

ATTACK = "exit_steal"
UNDEFENDED = "none"
TIMING_STAGES = ("shape_latency", "choose_exits")
"""A defense declaring one of these stages changes which latencies or exits a query shows."""
LEGACY_TIMING_DEFENSES = ("pad_bucket", "exit_noise", "jitter", "pad_constant", "timeguard")
"""Cells without ``components.defense.stages`` (written before it was recorded): the
built-in defenses that declare a timing stage."""


def draws_panel(cell: dict[str, Any]) -> bool:
    """Is this cell's defense the undefended baseline or one that shapes the channel?"""
    defense = as_dict(as_dict(cell.get("components")).get("defense"))
    name = text(defense.get("name"))
    if name == UNDEFENDED:
        return True
    stages = defense.get("stages")
    if isinstance(stages, list):
        return any(s in TIMING_STAGES for s in stages)
    return name in LEGACY_TIMING_DEFENSES


def load_cells(board_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every readable ``exit_steal`` cell under ``board_dir/cells`` whose defense gets a
    panel (path relative to ``board_dir``, result); unreadable files are skipped."""
    out = []
    for path in sorted((Path(board_dir) / "cells").rglob("*.json")):
        try:
            cell = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if (isinstance(cell, dict) and cell.get("status") == "ok"
                and _label(cell, "attack") == ATTACK and draws_panel(cell)):
            out.append((path.relative_to(board_dir), cell))
    return out


def _label(cell: dict[str, Any], kind: str) -> str:
    comp = as_dict(as_dict(cell.get("components")).get(kind))
    return text(comp.get("label") or comp.get("name")
                or as_dict(as_dict(cell.get("cell")).get(kind)).get("name"))


def histogram(cell: dict[str, Any]) -> tuple[list[float], list[list[float]]] | None:
    """(edges in s, counts per true exit) when the cell has a well-formed histogram."""
    hist = as_dict(as_dict(cell.get("diagnostics")).get("query_latency_histogram"))
    edges = [num(e) for e in as_list(hist.get("edges_s"))]
    counts = [[num(c) for c in as_list(row)] for row in as_list(hist.get("counts_by_exit"))]
    if (len(edges) < 2 or any(e is None for e in edges)
            or any(b <= a for a, b in itertools.pairwise(edges)) or not counts
            or any(len(row) != len(edges) - 1 or any(c is None or c < 0 for c in row)
                   for row in counts)):
        return None
    return edges, counts


def boundaries(cell: dict[str, Any]) -> list[float]:
    raw = as_list(as_dict(as_dict(cell.get("diagnostics")).get("attack"))
                  .get("estimated_boundaries_s"))
    return [b for b in (num(v) for v in raw) if b is not None and b > 0]


def _preferred(board: dict[str, Any]) -> set[str]:
    """Cell paths of the unparameterised ``exit_steal`` groups (when groups list cells)."""
    return {text(p) for _, row in groups(board) if text(row.get("attack")) == ATTACK
            and base_name(row, "attack") == ATTACK for p in as_list(row.get("cells"))}


def latency_plots(board: dict[str, Any], board_dir: Path) -> Plots:
    """One PNG per victim with at least one drawable panel; notes for the rest."""
    preferred = _preferred(board)
    by_panel: dict[tuple[str, str], list[tuple[Path, dict[str, Any]]]] = {}
    for path, cell in load_cells(board_dir):
        by_panel.setdefault((_label(cell, "victim"), _label(cell, "defense")), []).append((path, cell))
    files, notes, captions, taken = {}, [], {}, set()
    for victim in sorted({v for v, _ in by_panel}):
        panels = []
        named = {d for v, d in by_panel if v == victim}
        for defense in sorted(named, key=lambda d: (d != UNDEFENDED, d)):
            cells = by_panel[(victim, defense)]
            seed = lambda c: c[1].get("seed") if isinstance(c[1].get("seed"), int) else math.inf  # noqa: E731
            path, cell = min(cells, key=lambda c: (histogram(c[1]) is None,
                                                   str(c[0]) not in preferred, seed(c) != 0,
                                                   seed(c), str(c[0])))
            if histogram(cell) is None:
                notes.append(f"latency histogram {victim} / {defense}: no panel, cell {path} "
                             "has no diagnostics.query_latency_histogram (written before it "
                             "was recorded; run the cell again to get it)")
                continue
            panels.append((defense, path, cell))
        if not panels:
            notes.append(f"latency histograms {victim}: skipped, no {ATTACK} cell with a "
                         "latency histogram")
            continue
        name = f"latency_{slug(victim, taken)}.png"
        files[name] = _draw(victim, panels)
        captions[name] = (f"Latencies of the {ATTACK} attack's queries on {victim}, stacked by "
                          "the exit that served them, with the attack's estimated exit "
                          "boundaries (dashed); cells: " + ", ".join(str(p) for _, p, _ in panels))
    return Plots(files, notes, captions)


def _draw(victim: str, panels: list[tuple[str, Path, dict[str, Any]]]) -> bytes:
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(5.2 * cols, 3.6 * rows))
    for i, (defense, _, cell) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        hist = histogram(cell)
        assert hist is not None  # panels hold only cells with a histogram
        edges, counts = hist
        ms = [e * 1e3 for e in edges]
        widths = [b - a for a, b in itertools.pairwise(ms)]
        keep = [k for k in range(len(widths)) if ms[k] > 0]
        bottom = [0.0] * len(keep)
        for exit_index, row in enumerate(counts):
            heights = [row[k] for k in keep]
            ax.bar([ms[k] for k in keep], heights, width=[widths[k] for k in keep],
                   bottom=bottom, align="edge", color=f"C{exit_index % 10}",
                   label=f"exit {exit_index}", linewidth=0)  # numbered from 0, as the docs
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        for j, b in enumerate(boundaries(cell)):
            ax.axvline(b * 1e3, color="black", ls="--", lw=1,
                       label="estimated boundary" if j == 0 else None)
        ax.set_xscale("log")
        ax.set_xlabel("query latency (ms, log scale)")
        ax.set_ylabel("queries")
        seed = cell.get("seed")
        ax.set_title(f"{safe_label(victim, 30)}, defense={safe_label(defense, 20)}, seed {text(seed)}",
                     fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return png_bytes(fig)
