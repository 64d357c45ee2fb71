"""``harness leaderboard render``: a leaderboard folder as a static web page with plots.

Reads ``BOARD/leaderboard.json`` (and, for the latency histograms, the cell files under
``BOARD/cells``), writes ``OUT/index.html`` and ``OUT/plots/*.png`` (each atomically; OUT
defaults to BOARD). The page needs nothing but these files: open it from disk or serve the
folder. The board's format grows, so anything missing or unexpected shows as ``n/a`` and
never stops the render; a plot that cannot be drawn is skipped with a note, both in the
returned :class:`RenderReport` and on the page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.board.html_page import build_page
from harness.board.latency_plot import latency_plots
from harness.board.plots import Plots, budget_plot, frontier_plot, heatmap_plots
from harness.errors import ConfigError, OutputDirError
from harness.io.atomic import atomic_write_bytes

PLOTS_DIR = "plots"


@dataclass(frozen=True)
class RenderReport:
    """What a render wrote: the page, its PNG plots (in page order), and a note for each
    plot or panel it skipped and why."""

    index: Path
    plots: tuple[Path, ...]
    notes: tuple[str, ...]


def load_board(board_dir: Path) -> dict[str, Any]:
    """``board_dir/leaderboard.json`` as a dict, or a clear error saying what to do."""
    board_dir = Path(board_dir)
    if not board_dir.is_dir():
        raise OutputDirError(f"leaderboard render: {board_dir} is not a folder; give the folder "
                             "that holds leaderboard.json (a `harness run` out= folder or the "
                             "output of `harness leaderboard build`)")
    path = board_dir / "leaderboard.json"
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OutputDirError(f"leaderboard render: {path} does not exist; build it first with "
                             f"`harness leaderboard build {board_dir}` (or `harness run ... "
                             f"out={board_dir}`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputDirError(f"leaderboard render: cannot read {path} ({exc}); check its "
                             "permissions or rebuild it with `harness leaderboard build`") from None
    try:
        board = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"leaderboard render: {path} is not valid JSON ({exc.msg} at line "
                          f"{exc.lineno}, column {exc.colno}); rebuild it with `harness "
                          "leaderboard build`") from None
    if not isinstance(board, dict):
        raise ConfigError(f"leaderboard render: {path} holds a JSON {type(board).__name__}, not "
                          "the leaderboard object; rebuild it with `harness leaderboard build`")
    return board


def _write(path: Path, data: bytes) -> Path:
    try:
        atomic_write_bytes(path, data)
        path.chmod(0o644)  # a web page: readable by a web server, not private like mkstemp's 0600
        return path
    except OSError as exc:
        raise OutputDirError(f"leaderboard render: cannot write {path} ({exc.strerror or exc}); "
                             "give a writable output folder with -o") from None


def render_leaderboard(board_dir: Path, out_dir: Path | None = None,
                       benchmarks_dir: Path | None = None) -> RenderReport:
    """Render ``board_dir`` into ``out_dir`` (default ``board_dir``): ``index.html`` and
    ``plots/``: the defense frontier, one exit-agreement heatmap and one latency figure
    per victim, and the budget curves from ``benchmarks_dir/baseline_sweep.json``."""
    board_dir = Path(board_dir)
    board = load_board(board_dir)
    out = Path(out_dir) if out_dir is not None else board_dir
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"leaderboard render: output {out} is a file; give a folder")
    parts: list[Plots] = [frontier_plot(board), heatmap_plots(board),
                          latency_plots(board, board_dir), budget_plot(benchmarks_dir)]
    written, images, notes = [], [], []
    for part in parts:
        notes += part.notes
        for name, data in part.files.items():
            written.append(_write(out / PLOTS_DIR / name, data))
            images.append((f"{PLOTS_DIR}/{name}", part.captions.get(name, name)))
    index = _write(out / "index.html", build_page(board, images, notes).encode("utf-8"))
    return RenderReport(index=index, plots=tuple(written), notes=tuple(notes))
