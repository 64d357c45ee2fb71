"""JSON Schemas of cell results and of the leaderboard (committed as leaderboard/schema.json)."""

from __future__ import annotations

from typing import Any

from harness.run.config import THREAT_CHOICES

SCHEMA_VERSION = 2
"""2: results and leaderboards record the component protocol version. Threat settings
(``cell.threat``, leaderboard rows' ``threat``) are optional additions within version 2:
files written before them stay valid and read as granted/granted. So is a component's
``label`` (a stack's members, a sweep's values; absent -> its name) and a leaderboard
row's ``label`` fields."""

NUM_OR_NULL = {"type": ["number", "null"]}

COMPONENT = {
    "type": "object",
    "required": ["name", "params", "plugin", "distribution", "version"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
        "params": {"type": "object"},
        "plugin": {"type": "string"},
        "distribution": {"type": "string"},
        "version": {"type": "string"},
        "label": {"type": "string"},
    },
}

THREAT = {
    "type": "object",
    "required": list(THREAT_CHOICES),
    "properties": {k: {"enum": list(v)} for k, v in THREAT_CHOICES.items()},
    "additionalProperties": False,
}

STAT = {
    "type": "object",
    "required": ["mean", "ci95", "n"],
    "properties": {"mean": NUM_OR_NULL, "ci95": {"type": "array", "items": NUM_OR_NULL,
                                                 "minItems": 2, "maxItems": 2},
                   "n": {"type": "integer", "minimum": 0}},
}


def cell_result_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "cell result",
        "type": "object",
        "required": ["schema_version", "harness_version", "protocol_version", "config_hash",
                     "cell", "components",
                     "seed", "timing", "device", "machine", "packages", "git_commit", "status",
                     "error", "metrics", "diagnostics", "wall_time_s", "finished_at"],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "harness_version": {"type": "string"},
            "protocol_version": {"type": "integer", "minimum": 1},
            "config_hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "cell": {"type": "object", "properties": {"threat": THREAT}},
            "components": {"type": "object", "required": ["victim", "defense", "attack"],
                           "additionalProperties": COMPONENT},
            "seed": {"type": "integer", "minimum": 0},
            "timing": {"type": "object", "required": ["mode", "params", "profile_hash"],
                       "properties": {"mode": {"enum": ["realistic", "analytic", "replay",
                                                                 "live"]}}},
            "device": {"type": "string"},
            "machine": {"type": "object"},
            "packages": {"type": "object", "additionalProperties": {"type": "string"}},
            "git_commit": {"type": ["string", "null"]},
            "status": {"enum": ["ok", "failed"]},
            "error": {"oneOf": [{"type": "null"}, {
                "type": "object", "required": ["type", "message", "component"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                               "component": {"type": ["string", "null"]},
                               "traceback": {"type": "string"}}}]},
            "metrics": {"type": "object", "additionalProperties": NUM_OR_NULL},
            "diagnostics": {"type": "object"},
            "wall_time_s": {"type": "number", "minimum": 0},
            "finished_at": {"type": "string"},
        },
        "allOf": [{"if": {"properties": {"status": {"const": "ok"}}},
                   "then": {"properties": {"error": {"type": "null"},
                                           "metrics": {"required": ["exit_agreement"]}}}}],
    }


def leaderboard_schema() -> dict[str, Any]:
    row = {"type": "object", "required": ["victim", "defense", "attack", "reference", "seeds",
                                          "failed", "metrics"],
           "properties": {"victim": {"type": "string"}, "defense": {"type": "string"},
                          "attack": {"type": "string"}, "threat": THREAT,
                          "reference": {"type": "boolean"},
                          "seeds": {"type": "array", "items": {"type": "integer"}},
                          "failed": {"type": "integer", "minimum": 0},
                          "metrics": {"type": "object", "additionalProperties": STAT}}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "leaderboard",
        "type": "object",
        "required": ["schema_version", "harness_version", "protocol_version", "generated_at",
                     "headline",
                     "cells", "groups", "defense_ranking", "attack_ranking"],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "harness_version": {"type": "string"},
            "protocol_version": {"type": "integer", "minimum": 1},
            "generated_at": {"type": "string"},
            "headline": {"const": "exit_agreement"},
            "cells": {"type": "object", "required": ["ok", "failed"],
                      "properties": {"ok": {"type": "integer"}, "failed": {"type": "integer"}}},
            "groups": {"type": "array", "items": row},
            "defense_ranking": {"type": "array", "items": {
                "type": "object", "required": ["rank", "victim", "defense", "worst_attack",
                                               "worst_exit_agreement", "costs"],
                "properties": {"threat": THREAT}}},
            "attack_ranking": {"type": "array", "items": {
                "type": "object", "required": ["rank", "victim", "attack", "reference",
                                               "exit_agreement"],
                "properties": {"threat": THREAT}}},
        },
    }


def combined_schema() -> dict[str, Any]:
    """The file committed as ``leaderboard/schema.json``: both schemas under ``$defs``."""
    defs = {"cell_result": cell_result_schema(), "leaderboard": leaderboard_schema()}
    for d in defs.values():
        d.pop("$schema")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "exitsteal-harness results (a cell result or a leaderboard)",
            "$defs": defs,
            "oneOf": [{"$ref": "#/$defs/cell_result"}, {"$ref": "#/$defs/leaderboard"}]}


if __name__ == "__main__":  # python -m harness.report.schema > leaderboard/schema.json
    import json

    print(json.dumps(combined_schema(), indent=2, sort_keys=True))
