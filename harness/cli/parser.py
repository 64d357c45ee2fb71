"""The ``harness`` command line's arguments: every subcommand's parser, nothing else."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.board.ranking import CostBudget

KIND_ALIASES = {"victims": "victim", "attacks": "attack", "defenses": "defense",
                "datasets": "dataset", "estimators": "exit_estimator",
                "policies": "exit_policy", "backends": "backend",
                "architectures": "architecture"}


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and its options."""
    parser = argparse.ArgumentParser(prog="harness", description=(
        "Evaluate output-strategy stealing attacks and defenses on multi-exit networks."))
    parser.add_argument("--strict-plugins", action="store_true",
                        help="fail instead of skipping a plugin that does not load")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a grid of cells: KEY=VALUE overrides",
                         description="Example: harness run attacks=all defenses=all seeds=0,1 "
                                     "out=results attack.knockoff.epochs=20")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    run.add_argument("--config", type=Path, help="grid TOML file (overrides win)")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--force", action="store_true",
                     help="run every cell again, finished and intact ones included")
    lst = sub.add_parser("list", help="list registered components and their parameters")
    lst.add_argument("kind", nargs="?", choices=sorted(KIND_ALIASES))
    plugins = sub.add_parser("plugins", help="list loaded plugins")
    plugins.add_argument("--json", action="store_true")
    _leaderboard_parsers(sub)
    cal = sub.add_parser("calibrate", help="record a live latency profile: KEY=VALUE")
    cal.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    _serve_parsers(sub)
    _no_abbreviations(parser)
    return parser


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """Refuse abbreviated options everywhere (``--forc`` is an error, not ``--force``): a
    typo must never be taken for an option that changes what runs."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _no_abbreviations(child)


def _serve_parsers(sub: argparse._SubParsersAction) -> None:
    """``serve`` (a victim over HTTP) and ``attack`` (one attack on a remote server)."""
    serve = sub.add_parser("serve", help="serve one defended victim over HTTP: KEY=VALUE",
                           description="Example: harness serve victim=digits_cnn defense=none "
                                       "budget=500 --host 127.0.0.1 --port 8000")
    serve.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-body-bytes", type=int, default=16 * 2**20)
    serve.add_argument("--max-json-bytes", type=int, default=2**20)
    serve.add_argument("--max-batch", type=int, default=4096, help="inputs per request")
    serve.add_argument("--rate", type=float, default=2000.0, help="requests/s per client")
    serve.add_argument("--burst", type=float, default=500.0, help="request burst per client")
    serve.add_argument("--max-clients", type=int, default=256)
    serve.add_argument("--idle-client-s", type=float, default=600.0,
                       help="forget a client idle this long when the client table is full")
    serve.add_argument("--new-client-rate", type=float, default=5.0,
                       help="new client ids per second")
    serve.add_argument("--new-client-burst", type=float, default=50.0,
                       help="burst of new client ids")
    serve.add_argument("--header-timeout-s", type=float, default=10.0,
                       help="the most a request's line and headers may take")
    serve.add_argument("--body-timeout-s", type=float, default=30.0,
                       help="the most a request's body may take (408 after)")
    serve.add_argument("--api-keys", type=Path, default=None, metavar="FILE",
                       help="'NAME KEY' lines: every query needs Authorization: Bearer KEY and "
                            "is charged to NAME (budgets that id rotation cannot reset)")
    serve.add_argument("--no-pace", action="store_true",
                       help="answer at once instead of holding each answer for its latency")
    attack = sub.add_parser("attack", help="run one attack against a remote `harness serve`",
                            description="Example: harness attack knockoff --oracle "
                                        "http://127.0.0.1:8000 budget=300 out=stolen/knockoff")
    attack.add_argument("name", help="a registered attack (harness list attacks)")
    attack.add_argument("--oracle", required=True, metavar="URL", help="http://HOST:PORT")
    attack.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    score = sub.add_parser("score", help="score a stolen-model folder from `harness attack`",
                           description="Example: harness score stolen/knockoff "
                                       "victim=digits_cnn (writes stolen/knockoff/score.json)")
    score.add_argument("folder", help="the folder harness attack wrote (stolen.json, model.pt)")
    score.add_argument("overrides", nargs="*", metavar="KEY=VALUE")


ACTIONS = ("build", "show", "render", "verify", "update")


def _leaderboard_parsers(sub: argparse._SubParsersAction) -> None:
    board = sub.add_parser("leaderboard", help="build, show, render or verify a leaderboard",
                           description="Example: harness leaderboard build results -o "
                                       "leaderboard && harness leaderboard show leaderboard")
    actions = board.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="merge run folders into a leaderboard folder")
    build.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                       help="out= folders of `harness run` (each holds cells/)")
    build.add_argument("-o", "--out", type=Path, default=Path("leaderboard"))
    build.add_argument("--command", dest="made_by", default=None,
                       help="the command that produced the runs, recorded in the board "
                            "(default: this build's own command line)")
    build.add_argument("--remote", action="append", type=Path, default=[], metavar="DIR",
                       help="a folder `harness score` scored (score.json): listed as a "
                            "remote-attack row, apart and never ranked (repeatable)")
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


