"""Remote-attack rows: stolen models from ``harness attack --oracle URL``, scored offline.

``harness score DIR`` writes ``DIR/score.json`` (:mod:`harness.cli.score`);
``harness leaderboard build RUNS... --remote DIR`` copies each into ``OUT/remote/`` and
lists it in the board's ``remote_attacks`` section. A remote row is shown apart and never
ranked: nobody re-ran it under the protocol, the evaluator saw none of its queries (no
capacity, no slack, no estimation accuracy), and its server ran whatever deployment the
operator chose. It says what one real remote steal reached, marked as such.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from harness.errors import ConfigError

REMOTE_METRICS = ("exit_agreement", "exit_kappa", "fidelity", "accuracy", "efficiency_gap",
                  "queries_used")
"""What a remote row shows (the score file holds every metric it has)."""

SCORE_SCHEMA = {
    "type": "object",
    "required": ["kind", "remote", "victim", "attack", "metrics", "scored_at"],
    "properties": {
        "kind": {"const": "remote_score"}, "remote": {"const": True},
        "victim": {"type": "object", "required": ["name", "label"],
                   "properties": {"name": {"type": "string"}, "label": {"type": "string"}}},
        "attack": {"type": "object", "required": ["name"],
                   "properties": {"name": {"type": "string"}}},
        "metrics": {"type": "object", "required": ["exit_agreement"],
                    "properties": {"exit_agreement": {"type": "number", "minimum": 0,
                                                      "maximum": 1}},
                    "additionalProperties": {"type": ["number", "null"]}},
        "scored_at": {"type": "string"},
    },
}
"""A ``score.json`` as :mod:`harness.cli.score` writes it (what a board relies on)."""


def read_score(folder: Path) -> dict[str, Any]:
    """``folder/score.json``, checked; a clear error names what to run otherwise."""
    path = Path(folder) / "score.json"
    try:
        record = json.loads(path.read_text())
        jsonschema.validate(record, SCORE_SCHEMA)
    except FileNotFoundError:
        raise ConfigError(f"leaderboard build --remote {folder}: no score.json there; run "
                          f"`harness score {folder} victim=...` first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError,
            jsonschema.ValidationError) as exc:
        reason = exc.message if isinstance(exc, jsonschema.ValidationError) else str(exc)
        raise ConfigError(f"leaderboard build --remote {folder}: {path} is not a score file "
                          f"({reason}); run `harness score {folder}` again") from None
    return record


def remote_entry(record: dict[str, Any], file: str) -> dict[str, Any]:
    """A board row of a score record (``file``: its copy, relative to the board)."""
    metrics = record["metrics"]
    return {"victim": record["victim"]["label"], "attack": record["attack"]["name"],
            "remote": True, "ranked": False, "file": file, "server": record.get("server"),
            "seed": record.get("seed"), "scored_at": record["scored_at"],
            "metrics": {m: metrics.get(m) for m in REMOTE_METRICS if m in metrics},
            "not_available": list(record.get("not_available") or [])}


def write_scores(scores: list[tuple[Path, dict[str, Any]]], target: Path) -> list[dict[str, Any]]:
    """Write each ``(folder, record)`` read by :func:`read_score` to
    ``target/<n>-<folder>.json``; the board's rows."""
    rows = []
    for n, (folder, record) in enumerate(scores):
        name = f"{n:03d}-{Path(folder).resolve().name}.json"
        (target / name).write_text(json.dumps(record, indent=1, sort_keys=True))
        rows.append(remote_entry(record, f"remote/{name}"))
    return rows
