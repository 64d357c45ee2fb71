"""``harness score DIR KEY=VALUE ...``: score a stolen-model folder against a local victim.

``harness attack NAME --oracle URL`` writes ``DIR/stolen.json`` + ``DIR/model.pt`` and
scores nothing: a remote server never reveals its exits. Whoever holds the victim (the
operator of ``harness serve``, or anyone rebuilding a public recipe) scores the folder
here with the cell's own scoring code (:func:`harness.metrics.scoring.strategy_scores`
and :func:`~harness.metrics.scoring.final_exit_scores`) on the victim's held-out test
split: exit agreement and kappa, fidelity, accuracy, cost ratio, efficiency gap, the
final-exit scores. What needs the server's private log of the attack's queries (the
exit estimation accuracy, the channel capacity and slack, the query Bayes bound) is not
available for a remote steal and is left out, never guessed.

Keys (checked like ``harness serve``'s): ``victim=NAME`` (default: the victim the
server's ``/health`` named in ``stolen.json``), ``victim.NAME.PARAM=``, ``backend=``,
``device=``, ``cache_dir=``, ``data_root=``, and ``out=FILE`` (default
``DIR/score.json``). The score file is written atomically; ``harness leaderboard build
... --remote DIR`` adds it to a board as a *remote-attack* row, shown apart and never
ranked (docs/leaderboard.md).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.cell.scoring_target import stolen_strategy_scores, victim_view
from harness.cell.server import prepare_registered_victim, serve_victim
from harness.cell.spec import CellEnvironment
from harness.cell.stolen import StolenModelError, load_stolen
from harness.cell.substitute import model_outputs
from harness.cli.serve import run_overrides
from harness.errors import ConfigError
from harness.io.atomic import write_json_atomic
from harness.plugins.registry import load_registry
from harness.run.config import parse_overrides, split_override
from harness.run.grid import expand_grid
from harness.serving.devices import resolve_device
from harness.version import __version__

KEYS = ("victim", "backend", "device", "cache_dir", "data_root", "out")
SCORE_KIND = "remote_score"
NOT_AVAILABLE = ("exit_estimation_accuracy", "capacity_exit_accuracy", "capacity_slack",
                 "query_bayes_exit_accuracy")
"""Cell metrics a remote steal cannot have: they read the server's log of the queries."""


def read_stolen_doc(folder: Path) -> dict[str, Any]:
    """``DIR/stolen.json`` as written by ``harness attack`` (clear errors otherwise)."""
    path = folder / "stolen.json"
    if not path.is_file() or not (folder / "model.pt").is_file():
        raise ConfigError(f"score: {folder} holds no stolen model (stolen.json and model.pt, as "
                          "`harness attack NAME --oracle URL out=DIR` writes them); give the "
                          "folder harness attack wrote")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"score: {path} is not readable JSON ({exc}); run harness attack "
                          "again to rewrite it") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"score: {path} is not a stolen-model record (a JSON object)")
    return doc


def score_overrides(doc: dict[str, Any], overrides: list[str]) -> tuple[list[str], Path | None]:
    """The keys as ``harness serve`` keys (victim defaulting to the server's), and ``out``."""
    passed, out, named = [], None, False
    for text in overrides:
        key, value = split_override(text)
        if key == "out":
            out = Path(value)
        elif key in KEYS or key.startswith("victim."):
            passed.append(text)
            named |= key == "victim"
        else:
            raise ConfigError(f"score: unknown key {key!r}; valid keys: {', '.join(KEYS)}, "
                              "victim.NAME.PARAM")
    if not named:
        victim = ((doc.get("server") or {}).get("health") or {}).get("victim")
        if not isinstance(victim, str):
            raise ConfigError("score: stolen.json does not name the server's victim; give "
                              "victim=NAME (harness list victims)")
        passed.insert(0, f"victim={victim}")
    return passed, out


def score_folder(folder: Path, doc: dict[str, Any], keys: list[str],
                 strict: bool = False) -> dict[str, Any]:
    """Rebuild the victim (``keys``: :func:`score_overrides`'s) and the stolen model of
    ``folder`` (``doc``: its ``stolen.json``), score, and return the score record."""
    spec = parse_overrides(run_overrides(keys))
    registry = load_registry(strict=strict, untrusted="import")
    cell = expand_grid(spec, registry)[0]
    device = resolve_device(spec.settings.device)
    env = CellEnvironment(cache_dir=spec.cache_dir, data_root=spec.data_root)
    victim = prepare_registered_victim(registry, cell.victim.name, cell.victim.params, env,
                                       device)
    data = victim.data
    recipe = doc.get("recipe") if isinstance(doc.get("recipe"), dict) else {}
    shape, classes = tuple(recipe.get("input_shape") or ()), recipe.get("num_classes")
    if shape != tuple(data.input_shape) or classes != data.num_classes:
        raise ConfigError(f"score: the stolen model takes inputs {list(shape)} with {classes} "
                          f"classes, but victim {cell.victim.display!r} has "
                          f"{list(data.input_shape)} with {data.num_classes}; give the victim "
                          "the server served (victim=NAME victim.NAME.PARAM=...)")
    try:
        stolen, _ = load_stolen(folder, registry)
    except StolenModelError:
        raise
    except Exception as exc:  # a damaged model.pt, a recipe the registry cannot build
        raise StolenModelError(f"score: cannot rebuild the stolen model in {folder} "
                               f"({type(exc).__name__}: {exc})") from None
    served = serve_victim(registry, cell.settings.backend, victim, device, env)
    sub = model_outputs(stolen, data.test.x, device)
    metrics = stolen_strategy_scores(victim_view(victim, served), served.cost_fraction, sub,
                                     data.test.y)
    metrics["queries_used"] = float(doc.get("queries_used") or 0)
    attack = doc.get("attack") if isinstance(doc.get("attack"), dict) else {}
    return {"kind": SCORE_KIND, "remote": True, "harness_version": __version__,
            "scored_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "folder": folder.name, "victim": {"name": cell.victim.name,
                                              "label": cell.victim.display,
                                              "params": cell.victim.params},
            "backend": cell.settings.backend,
            "attack": {"name": str(attack.get("name", "unknown")),
                       "params": attack.get("params") or {}},
            "seed": doc.get("seed"), "server": (doc.get("server") or {}).get("url"),
            "threat": doc.get("threat"), "test_inputs": len(data.test.y),
            "metrics": metrics, "not_available": list(NOT_AVAILABLE),
            "stolen_strategy": sub.strategy}


def score_command(folder: str, overrides: list[str], strict: bool) -> int:
    doc = read_stolen_doc(Path(folder))
    keys, out = score_overrides(doc, overrides)
    record = score_folder(Path(folder), doc, keys, strict)
    target = write_json_atomic(out or Path(folder) / "score.json", record, indent=1)
    m = record["metrics"]
    print(f"{record['attack']['name']} (remote, {int(m['queries_used'])} queries) against "
          f"{record['victim']['label']}: exit agreement {m['exit_agreement']:.3f}, kappa "
          f"{m['exit_kappa']:.3f}, fidelity {m['fidelity']:.3f}, efficiency gap "
          f"{m['efficiency_gap']:.3f} on {record['test_inputs']} test inputs")
    print(f"not available for a remote steal: {', '.join(NOT_AVAILABLE)}")
    print(f"score: {target}")
    return 0
