"""``harness run``, ``list``, ``plugins`` and ``leaderboard RUN_DIR`` (main.py only parses)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from harness.board.build import check_run_dir
from harness.board.leaderboard import build_leaderboard
from harness.board.replica_agreement import format_replica_agreement
from harness.board.tables import format_defense_table, format_table
from harness.components import parameter_lines
from harness.isolation.plugin_host import evaluator_registry
from harness.plugins.manager import HarnessPluginManager, make_plugin_manager, plugin_infos
from harness.plugins.registry import Registry
from harness.run.config import parse_overrides
from harness.run.runner import run_grid


def _registry(strict: bool) -> tuple[HarnessPluginManager, Registry]:
    """The evaluator's manager and registry (untrusted plugins through a plugin host)."""
    pm = make_plugin_manager(strict=strict)
    return pm, evaluator_registry(pm)


def run(overrides: list[str], config: Path | None, progress: bool, strict: bool,
        force: bool = False, command: str | None = None) -> int:
    spec = parse_overrides(overrides, config)
    pm, registry = _registry(strict)
    summary = run_grid(spec, pm, show_progress=progress, force=force)
    board = build_leaderboard(summary.out, reference_attacks(registry), command,
                              real_attacks=real_attacks(registry))
    print(format_table(board))
    _print_replica_agreement(board)
    _print_defenses(board)
    print(f"\n{summary.total} cells ({summary.reused} reused, {summary.ran} run, "
          f"{summary.failed} failed)")
    print(f"cell results: {summary.out / 'cells'}")
    print(f"leaderboard:  {summary.out / 'leaderboard.json'}")
    return 1 if summary.failed else 0


def reference_attacks(registry: Registry) -> set[str]:
    """The names of the registered reference attacks (never ranked as real ones)."""
    return {e.name for e in registry.entries("attack") if getattr(e.cls, "reference", False)}


def real_attacks(registry: Registry) -> set[str]:
    """The names of the registered real attacks: a defense is ranked only when run
    against all of them (the board's coverage is against the attacks, not the grid)."""
    return {e.name for e in registry.entries("attack") if not getattr(e.cls, "reference", False)}


PLURALS = {"exit_policy": "exit policies", "exit_estimator": "exit estimators"}


def list_components(kinds: list[str], strict: bool) -> int:
    """Each component: name, plugin, summary, then every parameter with default and constraint."""
    _, registry = _registry(strict)
    for kind in kinds:
        print(f"{PLURALS.get(kind, kind + 's')}:")
        for entry in registry.entries(kind):
            doc = (entry.cls.__doc__ or "").strip().splitlines()
            summary = doc[0] if doc else ""
            print(f"  {entry.name:24} {entry.plugin} ({entry.distribution})  {summary}")
            for line in parameter_lines(entry.cls):
                print(f"      {line}")
    return 0


def plugins(as_json: bool, strict: bool) -> int:
    pm, _ = _registry(strict)
    infos = plugin_infos(pm)
    if as_json:
        print(json.dumps([asdict(i) for i in infos], indent=2, sort_keys=True))
    else:
        for i in infos:
            hooks = ", ".join(i.hooks) or "(imported only by the confined plugin host)"
            print(f"{i.name:24} {i.distribution} {i.version}  [{i.trust}]  hooks: {hooks}")
    return 0


def _print_replica_agreement(board: dict) -> None:
    """Each victim's replica agreement (mean and interval over its replicas, or n/a and why)."""
    text = format_replica_agreement(board)
    if text:
        print()
        print(text)


def _print_defenses(board: dict) -> None:
    """The defense table, when the board ranks more than the undefended baseline."""
    if any(e["defense"] != "none" for e in board["defense_ranking"]):
        print()
        print(format_defense_table(board))


def update_leaderboard(out: Path, strict: bool, command: str | None = None) -> int:
    """``harness leaderboard RUN_DIR``: aggregate one run folder in place and print it."""
    out = check_run_dir(out, "leaderboard")
    _, registry = _registry(strict)
    board = build_leaderboard(out, reference_attacks(registry), command,
                              real_attacks=real_attacks(registry))
    print(format_table(board))
    _print_replica_agreement(board)
    _print_defenses(board)
    print(f"leaderboard: {Path(out) / 'leaderboard.json'}")
    return 0
