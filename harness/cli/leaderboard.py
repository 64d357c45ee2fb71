"""``harness leaderboard build|show|render|verify`` (and the in-place ``update``).

``build`` merges run folders into a citable leaderboard folder; ``show`` prints its
tables; ``render`` writes a static page with plots; ``verify`` re-runs committed cells.
``harness leaderboard RUN_DIR`` (the form before the subcommands, :func:`harness.cli.
parser.legacy_argv`) still aggregates one run folder in place. The arguments are
defined in :mod:`harness.cli.parser`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema

from harness.board.build import build_board
from harness.board.ranking import CostBudget
from harness.board.render import render_leaderboard
from harness.board.tables import format_board
from harness.board.verify import verify_leaderboard
from harness.cli.commands import real_attacks, reference_attacks, update_leaderboard
from harness.errors import OutputDirError
from harness.io.schema import leaderboard_schema
from harness.isolation.plugin_host import evaluator_registry
from harness.plugins.manager import make_plugin_manager
from harness.run.config import default_cache_dir


def _board_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise OutputDirError(f"leaderboard {what}: {path} is not a folder; give a leaderboard "
                             "folder (made by `harness leaderboard build`) or a run folder")
    if not (path / "leaderboard.json").is_file():
        raise OutputDirError(f"leaderboard {what}: {path} holds no leaderboard.json; run "
                             f"`harness leaderboard build RUN_DIR -o {path}` first")
    return path


def _load_board(path: Path, what: str) -> dict[str, Any]:
    target = _board_dir(path, what) / "leaderboard.json"
    try:
        board = json.loads(target.read_text())
        jsonschema.validate(board, leaderboard_schema())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OutputDirError(f"leaderboard {what}: {target} is not valid JSON ({exc}); build "
                             "it again") from None
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise OutputDirError(f"leaderboard {what}: {target} does not match the leaderboard "
                             f"schema at {where} ({exc.message[:200]}); build it again with "
                             "this harness") from None
    return board


def run(args: argparse.Namespace) -> int:
    """Dispatch ``args.action``."""
    if args.action == "update":
        return update_leaderboard(args.board, args.strict_plugins,
                                  getattr(args, "invocation", None))
    if args.action == "build":
        budget = CostBudget(args.max_accuracy_drop, args.max_refusal_rate)
        registry = evaluator_registry(make_plugin_manager(strict=args.strict_plugins))
        board = build_board(args.runs, args.out, reference_attacks(registry),
                            args.made_by or getattr(args, "invocation", None), budget,
                            real_attacks(registry), args.remote)
        print(format_board(board))
        print(f"\nleaderboard: {args.out / 'leaderboard.json'} ({board['cells']['ok']} ok, "
              f"{board['cells']['failed']} failed cells in {board['cells']['groups']} groups)")
        return 0
    if args.action == "show":
        print(format_board(_load_board(args.board, "show")))
        return 0
    if args.action == "render":
        _load_board(args.board, "render")
        report = render_leaderboard(args.board, args.out, args.benchmarks)
        for note in report.notes:
            print(f"note: {note}")
        print(f"page: {report.index}")
        for png in report.plots:
            print(f"plot: {png}")
        return 0
    return _verify(args)


def _verify(args: argparse.Namespace) -> int:
    """Re-run (a sample of) the board's cells; exit 1 on a mismatch, a stale cell, or when
    nothing could be re-run."""
    board = _board_dir(args.board, "verify")
    if args.sample is not None and args.sample < 1:
        raise OutputDirError(f"leaderboard verify: --sample {args.sample} must be at least 1 "
                             "(or leave it out to verify every cell)")
    report = verify_leaderboard(board, sample=args.sample, seed=args.seed,
                                cache_dir=args.cache_dir or default_cache_dir(),
                                data_root=args.data_root, rerun_stale=args.rerun_stale,
                                progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(report.format_report())
    return 0 if report.ok and report.verified else 1
