"""``harness leaderboard build|show|render|verify`` (and the in-place ``update``).

``build`` merges run folders into a citable leaderboard folder; ``show`` prints its
tables; ``render`` writes a static page with plots; ``verify`` re-runs committed cells.
``harness leaderboard RUN_DIR`` (the form before the subcommands) still aggregates one
run folder in place.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.errors import OutputDirError
from harness.report.ranking import CostBudget

ACTIONS = ("build", "show", "render", "verify", "update")


def add_parser(sub: argparse._SubParsersAction) -> None:
    board = sub.add_parser("leaderboard", help="build, show, render or verify a leaderboard",
                           description="Example: harness leaderboard build results -o "
                                       "leaderboard && harness leaderboard show leaderboard")
    actions = board.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="merge run folders into a leaderboard folder")
    build.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                       help="out= folders of `harness run` (each holds cells/)")
    build.add_argument("-o", "--out", type=Path, default=Path("leaderboard"))
    build.add_argument("--command", dest="made_by", default=None,
                       help="the command that produced the runs (recorded in the board)")
    build.add_argument("--max-accuracy-drop", type=float, default=CostBudget.max_accuracy_drop,
                       help="cost budget: the largest benign accuracy drop of a ranked defense")
    build.add_argument("--max-refusal-rate", type=float, default=CostBudget.max_refusal_rate,
                       help="cost budget: the largest benign refusal rate of a ranked defense")
    show = actions.add_parser("show", help="print the tables of a leaderboard")
    show.add_argument("board", nargs="?", type=Path, default=Path("leaderboard"))
    render = actions.add_parser("render", help="write index.html and PNG plots")
    render.add_argument("board", nargs="?", type=Path, default=Path("leaderboard"))
    render.add_argument("-o", "--out", type=Path, default=None,
                        help="where to write (default: the leaderboard folder)")
    render.add_argument("--benchmarks", type=Path, default=None,
                        help="benchmarks/results, for the budget curves when present")
    verify = actions.add_parser("verify", help="re-run committed cells and compare")
    verify.add_argument("board", nargs="?", type=Path, default=Path("leaderboard"))
    verify.add_argument("--sample", type=int, default=None, metavar="N",
                        help="re-run a seeded sample of N cells (default: all)")
    verify.add_argument("--seed", type=int, default=0)
    verify.add_argument("--rerun-stale", action="store_true",
                        help="also re-run cells whose code digest no longer matches")
    verify.add_argument("--cache-dir", type=Path, default=None)
    verify.add_argument("--data-root", type=Path, default=None)
    update = actions.add_parser("update", help="aggregate one run folder in place")
    update.add_argument("board", type=Path, metavar="RUN_DIR")


def legacy_argv(argv: list[str]) -> list[str]:
    """``leaderboard RUN_DIR`` -> ``leaderboard update RUN_DIR``."""
    if len(argv) >= 2 and argv[0] == "leaderboard" and argv[1] not in (
            *ACTIONS, "-h", "--help"):
        return ["leaderboard", "update", *argv[1:]]
    return argv


def _board_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise OutputDirError(f"leaderboard {what}: {path} is not a folder; give a leaderboard "
                             "folder (made by `harness leaderboard build`) or a run folder")
    if not (path / "leaderboard.json").is_file():
        raise OutputDirError(f"leaderboard {what}: {path} holds no leaderboard.json; run "
                             f"`harness leaderboard build RUN_DIR -o {path}` first")
    return path


def _load_board(path: Path, what: str) -> dict[str, Any]:
    import jsonschema

    from harness.report.schema import leaderboard_schema

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


def run(args: argparse.Namespace, reference_attacks: Any) -> int:
    """Dispatch ``args.action``; ``reference_attacks()`` gives the reference attack names."""
    from harness.report.tables import format_board

    if args.action == "update":
        from harness.cli.commands import leaderboard as update

        return update(args.board, args.strict_plugins)
    if args.action == "build":
        from harness.report.build import build_board

        budget = CostBudget(args.max_accuracy_drop, args.max_refusal_rate)
        board = build_board(args.runs, args.out, reference_attacks(), args.made_by, budget)
        print(format_board(board))
        print(f"\nleaderboard: {args.out / 'leaderboard.json'} ({board['cells']['ok']} ok, "
              f"{board['cells']['failed']} failed cells in {board['cells']['groups']} groups)")
        return 0
    if args.action == "show":
        print(format_board(_load_board(args.board, "show")))
        return 0
    if args.action == "render":
        from harness.report.render import render_leaderboard

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
    import sys

    from harness.run.config import default_cache_dir
    from harness.run.verify import verify_leaderboard

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
