"""``harness`` command line: parses arguments and dispatches, nothing else.

Each subcommand's module is imported only when that subcommand runs (the imports inside
:func:`_dispatch`): ``harness list`` need not load the runner and its workers, nor
``harness serve`` the leaderboard's plotting library.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from harness.cli.parser import KIND_ALIASES, build_parser, legacy_argv
from harness.errors import GridInterrupted, HarnessError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    given = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(legacy_argv(given))
    args.invocation = invocation(given)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if len(overrides) != len(extra) or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if overrides:  # KEY=VALUE after an option, e.g. `run out=x --quiet budget=50`
        args.overrides = [*args.overrides, *overrides]
    try:
        return _dispatch(args)
    except BrokenPipeError:  # output piped into e.g. `head`
        sys.stderr.close()
        return 0
    except GridInterrupted as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 130
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2


def invocation(argv: list[str]) -> str:
    """The command line as typed (``harness ...``, shell-quoted): a board records it as
    the command that built it unless ``--command`` says otherwise."""
    return shlex.join(["harness", *argv])


def _dispatch(args: argparse.Namespace) -> int:
    strict = args.strict_plugins
    if args.command == "leaderboard":
        from harness.cli import leaderboard  # per subcommand: see the module docstring

        return leaderboard.run(args)
    if args.command == "calibrate":
        from harness.cli.calibrate import calibrate_command  # per subcommand

        return calibrate_command(args.overrides, strict)
    if args.command == "serve":
        from harness.cli.serve import serve_command  # per subcommand

        return serve_command(args, strict)
    if args.command == "attack":
        from harness.cli.attack import attack_command  # per subcommand

        return attack_command(args.name, args.oracle, args.overrides, strict)
    if args.command == "score":
        from harness.cli.score import score_command  # per subcommand

        return score_command(args.folder, args.overrides, strict)
    from harness.cli import commands  # run, list, plugins (per subcommand)

    if args.command == "run":
        return commands.run(args.overrides, args.config, not args.quiet, strict,
                            force=args.force, command=args.invocation)
    if args.command == "list":
        kinds = [KIND_ALIASES[args.kind]] if args.kind else list(KIND_ALIASES.values())
        return commands.list_components(kinds, strict)
    return commands.plugins(args.json, strict)


if __name__ == "__main__":
    sys.exit(main())
