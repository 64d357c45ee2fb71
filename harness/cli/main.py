"""``harness`` command line: parses arguments and dispatches, nothing else."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli import leaderboard as leaderboard_cli
from harness.errors import GridInterrupted, HarnessError

KIND_ALIASES = {"victims": "victim", "attacks": "attack", "defenses": "defense",
                "datasets": "dataset", "estimators": "exit_estimator",
                "policies": "exit_policy", "backends": "backend",
                "architectures": "architecture"}


def _parser() -> argparse.ArgumentParser:
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
    leaderboard_cli.add_parser(sub)
    cal = sub.add_parser("calibrate", help="record a live latency profile: KEY=VALUE")
    cal.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    _serve_parsers(sub)
    return parser


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
    serve.add_argument("--no-pace", action="store_true",
                       help="answer at once instead of holding each answer for its latency")
    attack = sub.add_parser("attack", help="run one attack against a remote `harness serve`",
                            description="Example: harness attack knockoff --oracle "
                                        "http://127.0.0.1:8000 budget=300 out=stolen/knockoff")
    attack.add_argument("name", help="a registered attack (harness list attacks)")
    attack.add_argument("--oracle", required=True, metavar="URL", help="http://HOST:PORT")
    attack.add_argument("overrides", nargs="*", metavar="KEY=VALUE")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(
        leaderboard_cli.legacy_argv(list(sys.argv[1:] if argv is None else argv)))
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if len(overrides) != len(extra) or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if overrides:  # KEY=VALUE after an option, e.g. `run out=x --quiet budget=50`
        args.overrides = [*args.overrides, *overrides]
    try:
        from harness.cli import commands

        if args.command == "run":
            return commands.run(args.overrides, args.config, not args.quiet, args.strict_plugins,
                                force=args.force)
        if args.command == "list":
            kinds = [KIND_ALIASES[args.kind]] if args.kind else list(KIND_ALIASES.values())
            return commands.list_components(kinds, args.strict_plugins)
        if args.command == "plugins":
            return commands.plugins(args.json, args.strict_plugins)
        if args.command == "leaderboard":
            return leaderboard_cli.run(args, lambda: commands.reference_attacks(
                args.strict_plugins))
        if args.command == "calibrate":
            return commands.calibrate(args.overrides, args.strict_plugins)
        if args.command == "serve":
            return commands.serve(args, args.strict_plugins)
        if args.command == "attack":
            return commands.attack(args.name, args.oracle, args.overrides, args.strict_plugins)
    except BrokenPipeError:  # output piped into e.g. `head`
        sys.stderr.close()
        return 0
    except GridInterrupted as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 130
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
