"""JSON Schemas of cell results and of the leaderboard (committed as leaderboard/schema.json)."""

from __future__ import annotations

from typing import Any

MAX_SEED = 2**32 - 1
"""Largest cell seed (``seeds=``): the run keys and the result schema share these limits."""
MAX_REPLICAS = 20
"""Most replicas per victim (``replicas=0..20``; 0 turns the replica agreement off)."""
THREAT_CHOICES = {"num_exits": ("granted", "hidden"), "architecture": ("granted", "hidden"),
                  "defense": ("known", "hidden")}
"""What the threat model may grant an attack (``threat.KEY=``); the first choice is the
default (``defense``: whether the defense's code and parameters are public, as a cell
records them; absent in results written before it, which read as ``known``)."""

SCHEMA_VERSION = 3
"""3: cell results carry a content digest (``content_digest``, :mod:`harness.io.integrity`),
their metrics are a closed set each bounded to its range (:data:`METRIC_BOUNDS`), and
component origins carry a ``source_digest``; leaderboard rows carry their exact group key
and provenance. 2: results and leaderboards record the component protocol version. Threat settings
(``cell.threat``, leaderboard rows' ``threat``) are optional additions within version 2:
files written before them stay valid and read as granted/granted. So is a component's
``label`` (a stack's members, a sweep's values; absent -> its name) and a leaderboard
row's ``label`` fields. So are ``pool`` in threat settings (absent -> ``same``), ``defense``
in threat settings (absent -> ``known``), the
replica-agreement files (``OUT/replicas/*.json``) and the leaderboard's
``replica_agreement`` section (absent in leaderboards written before it)."""

NUM_OR_NULL = {"type": ["number", "null"]}

UNIT = (0.0, 1.0)
SIGNED_UNIT = (-1.0, 1.0)
RATIO = (-1.0, None)
NON_NEGATIVE = (0.0, None)
METRIC_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    **dict.fromkeys(("exit_agreement", "fidelity", "accuracy", "victim_accuracy",
                     "exit_distribution_tv", "final_exit_fidelity", "exit_estimation_accuracy",
                     "query_bayes_exit_accuracy", "benign_refusal_rate", "bayes_exit_accuracy",
                     "bayes_exit_accuracy_intended", "chance_exit_accuracy",
                     "chance_exit_accuracy_intended", "capacity_exit_accuracy",
                     "capacity_exit_accuracy_lo", "capacity_exit_accuracy_hi",
                     "exit_estimation_accuracy_intended"), UNIT),
    "exit_kappa": SIGNED_UNIT, "capacity_slack": SIGNED_UNIT, "benign_accuracy_drop": SIGNED_UNIT,
    **dict.fromkeys(("cost_ratio", "efficiency_gap", "final_exit_efficiency_gap",
                     "queries_used", "queries_refused"), NON_NEGATIVE),
    **dict.fromkeys(("leakage_bits", "leakage_bits_intended"), (0.0, 6.0)),
    **dict.fromkeys(("latency_overhead_p50", "latency_overhead_p99", "compute_overhead"), RATIO),
    "speedup_retained": (None, None),
}
"""Every metric a cell reports and its range (None: unbounded on that side). Rates lie in
[0, 1]; kappa and the accuracy drop in [-1, 1]; relative overheads (x / baseline - 1) are
at least -1; leakage is at most log2(64) = 6 bits (the most exits a victim may have);
``speedup_retained`` is a ratio of speed-ups that is negative when a defense slows benign
clients below the full network. Anything else, or a value out of range, is invalid."""


def bounded(bounds: tuple[float | None, float | None]) -> dict[str, Any]:
    """A schema for a number (or null) within ``bounds``."""
    lo, hi = bounds
    number: dict[str, Any] = {"type": "number"}
    if lo is not None:
        number["minimum"] = lo
    if hi is not None:
        number["maximum"] = hi
    return {"oneOf": [{"type": "null"}, number]}


METRICS = {"type": "object", "additionalProperties": False,
           "properties": {m: bounded(b) for m, b in METRIC_BOUNDS.items()}}

DEFENSE_STAGES = ("admit", "choose_exits", "perturb_outputs", "shape_latency")
"""The defense stages a cell may list (harness.stages.STAGES; a test keeps them equal)."""

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
        "stages": {"type": "array", "items": {"enum": list(DEFENSE_STAGES)}, "uniqueItems": True},
    },
}
"""A component of a cell; a defense's ``stages`` are the ones it declares (older cells
have none)."""

NAME = {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": 128}
HEX = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
SEED = {"type": "integer", "minimum": 0, "maximum": MAX_SEED}

THREAT = {
    "type": "object",
    "required": ["num_exits", "architecture"],
    "properties": {**{k: {"enum": list(v)} for k, v in THREAT_CHOICES.items()},
                   "pool": NAME},  # "same" or a dataset name
    "additionalProperties": False,
}

STAT = {
    "type": "object",
    "required": ["mean", "ci95", "n"],
    "properties": {"mean": NUM_OR_NULL, "ci95": {"type": "array", "items": NUM_OR_NULL,
                                                 "minItems": 2, "maxItems": 2},
                   "n": {"type": "integer", "minimum": 0}},
}


SIGNATURE = {"type": "object", "required": ["algorithm", "key", "value"],
             "properties": {"algorithm": {"const": "ed25519"},
                            "key": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
                            "value": {"type": "string", "pattern": "^[0-9a-f]{128}$"}}}
"""The evaluator's Ed25519 signature of a result file (:mod:`harness.io.signing`); the
check that it is present, valid and listed by a manifest is the loader's."""


def cell_result_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "cell result",
        "type": "object",
        "required": ["schema_version", "harness_version", "protocol_version", "config_hash",
                     "cell", "components",
                     "seed", "timing", "device", "machine", "packages", "git_commit", "status",
                     "error", "metrics", "diagnostics", "wall_time_s", "finished_at",
                     "content_digest"],
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
            "core_digest": {"type": "string"},
            "status": {"enum": ["ok", "failed"]},
            "error": {"oneOf": [{"type": "null"}, {
                "type": "object", "required": ["type", "message", "component"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                               "component": {"type": ["string", "null"]},
                               "traceback": {"type": "string"}}}]},
            "metrics": METRICS,
            "diagnostics": {"type": "object"},
            "content_digest": {"type": "object", "required": ["algorithm", "sha256", "fields"],
                               "properties": {"algorithm": {"type": "string"},
                                              "sha256": HEX,
                                              "fields": {"type": "object",
                                                         "additionalProperties": {
                                                             "type": "string"}}}},
            "wall_time_s": {"type": "number", "minimum": 0},
            "finished_at": {"type": "string"},
            "signature": SIGNATURE,
        },
        "allOf": [{"if": {"properties": {"status": {"const": "ok"}}},
                   "then": {"properties": {"error": {"type": "null"},
                                           "metrics": {"required": ["exit_agreement"]}}}}],
    }


REPLICA_STATUS = ("ok", "not_available", "failed")
"""Status of a replica-agreement file; a leaderboard adds ``missing`` (no file for a victim)."""
REPLICAS = {"type": "array", "maxItems": MAX_REPLICAS, "items": {
    "type": "object", "required": ["seed", "metrics"],
    "properties": {"seed": SEED, "weights_hash": HEX,
                   "thresholds": {"type": "array", "items": {"type": "number"},
                                  "maxItems": 1024},
                   "metrics": {"type": "object", "maxProperties": 64,
                               "additionalProperties": NUM_OR_NULL}}}}
SEEDS = {"type": "array", "items": SEED, "maxItems": MAX_REPLICAS, "uniqueItems": True}
REASON = {"type": ["string", "null"], "maxLength": 4000}


def replica_agreement_schema() -> dict[str, Any]:
    """``OUT/replicas/<victim>-<hash16>.json`` (:mod:`harness.run.replicas`)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "replica agreement",
        "type": "object",
        "required": ["kind", "schema_version", "harness_version", "config_hash", "victim",
                     "replicas_requested", "seed_param", "secret_mode", "device", "status",
                     "reason", "seeds", "replicas", "metrics", "wall_time_s", "finished_at"],
        "properties": {
            "kind": {"enum": ["replica_agreement", "replica_ceiling"]},
            "schema_version": {"const": SCHEMA_VERSION},
            "harness_version": {"type": "string"},
            "config_hash": HEX,
            "victim": COMPONENT,
            "replicas_requested": {"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS},
            "seed_param": NAME,
            "secret_mode": {"enum": ["public", "secret", "folder"]},
            "device": {"type": "string"},
            "status": {"enum": list(REPLICA_STATUS)},
            "reason": REASON,
            "victim_train_seed": SEED,
            "victim_weights_hash": HEX,
            "seeds": SEEDS,
            "replicas": REPLICAS,
            "metrics": {"type": "object", "maxProperties": 64, "additionalProperties": STAT},
            "wall_time_s": {"type": "number", "minimum": 0},
            "finished_at": {"type": "string"},
            "signature": SIGNATURE,
        },
        "allOf": [{"if": {"properties": {"status": {"const": "ok"}}},
                   "then": {"required": ["victim_train_seed"],
                            "properties": {"replicas": {"minItems": 1},
                                           "metrics": {"required": ["exit_agreement",
                                                                    "fidelity"]}}}}],
    }


REPLICA_ENTRY = {
    "type": "object", "required": ["victim", "status", "reason", "n", "seeds", "metrics"],
    "properties": {"victim": {"type": "string"},
                   "status": {"enum": [*REPLICA_STATUS, "missing"]},
                   "reason": REASON,
                   "n": {"type": "integer", "minimum": 0, "maximum": MAX_REPLICAS},
                   "seeds": SEEDS,
                   "victim_train_seed": {"oneOf": [SEED, {"type": "null"}]},
                   "metrics": {"type": "object", "maxProperties": 64,
                               "additionalProperties": STAT},
                   "replicas": REPLICAS,
                   "config_hash": {"oneOf": [HEX, {"type": "null"}]},
                   "secret_mode": {"enum": ["public", "secret", "folder", None]}},
}
"""One victim's replica agreement in a leaderboard (``missing``: no file in the run dir)."""


INTERVAL = {"oneOf": [{"type": "null"},
                      {"type": "array", "items": NUM_OR_NULL, "minItems": 2, "maxItems": 2}]}
ORIGIN = {"type": "object", "required": ["plugin", "distribution", "version"],
          "properties": {"plugin": {"type": "string"}, "distribution": {"type": "string"},
                         "version": {"type": "string"}, "source_digest": {"type": "string"}}}
GROUP_ROW = {
    "type": "object",
    "required": ["group_id", "key", "victim", "defense", "attack", "variant", "scenario",
                 "scenario_id", "reference", "seeds", "failed", "config_hashes", "cells",
                 "plugins", "packages", "metrics", "bootstrap_ci95", "exit_confusion"],
    "properties": {
        "group_id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
        "key": {"type": "object", "required": ["victim", "defense", "attack", "budget",
                                               "output", "timing", "backend", "device",
                                               "threat"]},
        "victim": {"type": "string"}, "defense": {"type": "string"},
        "attack": {"type": "string"}, "variant": {"type": "string"},
        "scenario": {"type": "string"}, "threat": THREAT,
        "reference": {"type": "boolean"},
        "unranked": {"type": ["string", "null"]},
        "seeds": {"type": "array", "items": {"type": "integer"}},
        "failed": {"type": "integer", "minimum": 0},
        "config_hashes": {"type": "array", "items": HEX, "minItems": 1},
        "victim_weights": {"type": "array", "items": {"type": "string"}},
        "cells": {"type": "array", "items": {"type": "string"}},
        "plugins": {"type": "object", "required": ["victim", "defense", "attack"],
                    "additionalProperties": {"type": "array", "items": ORIGIN}},
        "packages": {"type": "array", "items": {"type": "object"}},
        "metrics": {"type": "object", "additionalProperties": STAT},
        "bootstrap_ci95": {"type": "object", "additionalProperties": INTERVAL},
        "exit_confusion": {"oneOf": [{"type": "null"}, {
            "type": "array", "items": {"type": "array", "items": {"type": "integer",
                                                                  "minimum": 0}}}]},
    },
}
PAIRED = {"type": "object", "required": ["mean", "ci95", "n", "seeds"],
          "properties": {"mean": NUM_OR_NULL, "ci95": INTERVAL, "n": {"type": "integer"},
                         "seeds": {"type": "array", "items": {"type": "integer"}}}}
"""A paired difference over shared seeds (mean, 95% t-interval, seeds)."""
DEFENSE_ENTRY = {
    "type": "object",
    "required": ["rank", "victim", "scenario", "defense", "worst_attack",
                 "worst_exit_agreement", "status", "complete", "missing_attacks",
                 "failed_attacks", "within_budget", "over_budget", "pareto", "costs"],
    "properties": {"rank": {"type": ["integer", "null"], "minimum": 1}, "threat": THREAT,
                   "status": {"enum": ["ranked", "incomplete", "over_budget"]},
                   "complete": {"type": "boolean"}, "within_budget": {"type": "boolean"},
                   "pareto": {"type": "boolean"}, "provisional": {"type": "boolean"},
                   "min_slack": bounded(SIGNED_UNIT),
                   "min_slack_attack": {"type": ["string", "null"]},
                   "worst_exit_agreement": bounded(UNIT),
                   "costs": {"type": "object", "additionalProperties": NUM_OR_NULL},
                   "defense_report": {"type": "object",
                                      "additionalProperties": {"type": "number"}},
                   "deployment": {"type": ["string", "null"]},
                   "seed_worst": STAT,
                   "tier": {"type": ["integer", "null"], "minimum": 1},
                   "tier_leader": {"type": ["string", "null"]},
                   "vs_tier_leader": {"oneOf": [{"type": "null"}, PAIRED]},
                   "vs_none": {"oneOf": [{"type": "null"}, PAIRED]},
                   "no_better_than_none": {"type": ["boolean", "null"]}},
}


def leaderboard_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "leaderboard",
        "type": "object",
        "required": ["schema_version", "harness_version", "protocol_version", "generated_at",
                     "headline", "command", "cost_budget", "cells", "groups",
                     "defense_ranking", "attack_ranking", "paired_differences"],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "harness_version": {"type": "string"},
            "protocol_version": {"type": "integer", "minimum": 1},
            "generated_at": {"type": "string"},
            "headline": {"const": "exit_agreement"},
            "command": {"type": ["string", "null"]},
            "sources": {"type": "array", "items": {"type": "object"}},
            "signing_keys": {"type": "array",
                             "items": {"type": "string", "pattern": "^[0-9a-f]{16}$"}},
            "cost_budget": {"type": "object", "additionalProperties": {"type": "number"}},
            "cells": {"type": "object", "required": ["ok", "failed"],
                      "properties": {"ok": {"type": "integer"}, "failed": {"type": "integer"}}},
            "groups": {"type": "array", "items": GROUP_ROW},
            "defense_ranking": {"type": "array", "items": DEFENSE_ENTRY},
            "remote_attacks": {"type": "array", "items": {
                "type": "object", "required": ["victim", "attack", "remote", "ranked", "file",
                                               "metrics"],
                "properties": {"remote": {"const": True}, "ranked": {"const": False},
                               "metrics": {"type": "object",
                                           "additionalProperties": NUM_OR_NULL}}}},
            "attack_ranking": {"type": "array", "items": {
                "type": "object", "required": ["rank", "victim", "scenario", "attack",
                                               "reference", "exit_agreement"],
                "properties": {"threat": THREAT, "replica_exit_agreement": NUM_OR_NULL,
                               "replica_fidelity": NUM_OR_NULL,
                               "exit_agreement": bounded(UNIT)}}},
            "paired_differences": {"type": "array", "items": {
                "type": "object", "required": ["kind", "a", "b", "metric", "mean", "ci95",
                                               "n", "seeds"],
                "properties": {"kind": {"enum": ["attack", "defense"]}}}},
            "replica_agreement": {"type": "array", "items": REPLICA_ENTRY},
        },
    }


def combined_schema() -> dict[str, Any]:
    """The file committed as ``leaderboard/schema.json``: the three schemas under ``$defs``."""
    defs = {"cell_result": cell_result_schema(), "leaderboard": leaderboard_schema(),
            "replica_agreement": replica_agreement_schema()}
    for d in defs.values():
        d.pop("$schema")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "exitsteal-harness results (a cell result, a leaderboard or a replica "
                     "agreement file)",
            "$defs": defs,
            "oneOf": [{"$ref": "#/$defs/cell_result"}, {"$ref": "#/$defs/leaderboard"},
                      {"$ref": "#/$defs/replica_agreement"}]}


if __name__ == "__main__":  # python -m harness.io.schema > leaderboard/schema.json
    import json

    print(json.dumps(combined_schema(), indent=2, sort_keys=True))
