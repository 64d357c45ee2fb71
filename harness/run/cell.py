"""One cell in three named phases (DESIGN section 4).

1. :func:`steal` - the attack queries a defended endpoint through its oracle and
   returns a :class:`StolenModel`; the oracle keeps the private log of true exits.
   Benign clients share that endpoint, interleaved (:mod:`harness.run.benign`).
2. :func:`score_theft` - the substitute and its stolen strategy against the undefended
   victim on the held-out test split, plus how well the attack estimated exits.
3. :func:`measure_defense` - what the benign clients received against an undefended
   endpoint answering the same chunks: the defense's cost and the leakage that remains.

The attack's stream gets a fresh defense instance, and every stream has a named,
salted random stream
(:class:`harness.run.server.Stream`). Component errors are labelled with the component.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.components import build_component
from harness.errors import ComponentFailure, ConfigError, HarnessError
from harness.isolation.secret import secret_mode
from harness.model import MultiExitNet, exit_probabilities
from harness.plugins.registry import Registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import AttackContext, ServedModel, Split, StolenModel, TrainedVictim
from harness.report.leakage import bayes_exit_accuracy, leakage_bits, majority_exit_rate
from harness.report.scoring import (
    defense_costs,
    exit_confusion,
    exit_estimation_accuracy,
    final_exit_scores,
    latency_histogram,
    strategy_scores,
)
from harness.run.benign import BenignPlan, InterleavedEndpoint, replay
from harness.run.config import ThreatModel
from harness.run.grid import CellSpec
from harness.run.pool import attacker_pool
from harness.run.server import CellEnvironment, Server, Stream, prepare_registered_victim
from harness.serving.devices import resolve_device
from harness.serving.endpoint import EndpointResponse
from harness.serving.oracle import Oracle
from harness.strategy import OutputStrategy, answering_probs

__all__ = ["CellEnvironment", "attack_context", "measure_defense", "prepare_victim", "run_cell",
           "score_theft", "steal", "threat_view"]


@dataclass(frozen=True)
class Theft:
    """What phase 1 leaves for scoring: the stolen model and the oracle's private log."""

    stolen: StolenModel
    served_exits: np.ndarray
    served_latency_s: np.ndarray
    queries_used: int
    queries_refused: int
    diagnostics: dict[str, Any]
    benign: EndpointResponse
    plan: BenignPlan
    defense_report: dict[str, float]


def prepare_victim(registry: Registry, cell: CellSpec, env: CellEnvironment,
                   device: str) -> TrainedVictim:
    """The cell's victim, trained or loaded from the cache."""
    return prepare_registered_victim(registry, cell.victim.name, cell.victim.params, env, device)


def _check_stolen(stolen: Any, num_classes: int, label: str, component: str) -> StolenModel:
    def fail(message: str) -> ComponentFailure:
        return ComponentFailure(f"{label}: {message}", component)

    if not isinstance(stolen, StolenModel):
        raise fail(f"steal() returned {type(stolen).__name__}, expected "
                   "harness.protocol.StolenModel")
    if not isinstance(stolen.model, MultiExitNet):
        raise fail("the substitute must be a harness.model.MultiExitNet")
    if not isinstance(stolen.strategy, OutputStrategy):
        raise fail("the strategy must be a harness.strategy.OutputStrategy")
    try:
        stolen.strategy.validate(stolen.model.num_exits, num_classes, owner=label)
    except ConfigError as exc:
        raise ComponentFailure(str(exc), component) from None
    return stolen


def _jsonable_diagnostics(stolen: StolenModel, label: str, component: str) -> dict[str, Any]:
    """The attack's diagnostics as JSON, or the attack's failure."""
    try:
        diagnostics = _jsonable(dict(stolen.diagnostics))
        json.dumps(diagnostics, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ComponentFailure(f"{label}: diagnostics are not JSON-serialisable ({exc}); return "
                               "numbers, strings, lists and dicts", component) from None
    return diagnostics


def threat_view(threat: ThreatModel, num_exits: int, family: str,
                cost_fraction: Sequence[float]) -> dict[str, Any]:
    """The :class:`AttackContext` fields the threat model decides (None = hidden).

    The victim's cost fractions are given only when both the number of exits and the
    family are granted (an attacker that knows both can measure them on its own copy).
    """
    both = threat.grants_num_exits and threat.grants_architecture
    return {"num_exits": num_exits if threat.grants_num_exits else None,
            "victim_family": family if threat.grants_architecture else None,
            "cost_fraction": tuple(float(c) for c in cost_fraction) if both else None}


def attack_context(cell: CellSpec, victim: TrainedVictim, served: ServedModel, device: str,
                   env: CellEnvironment, registry: Registry) -> AttackContext:
    """The context a cell hands its attack under ``cell.threat`` (``isolation=none``)."""
    data = victim.data
    return AttackContext(
        seed=cell.seed, device=device, budget=cell.budget, output=cell.output,
        input_shape=data.input_shape, num_classes=data.num_classes, input_range=data.input_range,
        cache_dir=env.cache_dir, toolbox=Toolbox(registry),
        **threat_view(cell.threat, victim.model.num_exits, victim.family, served.cost_fraction))


def attack_label(registry: Registry, cell: CellSpec) -> tuple[Any, str, str]:
    """The attack's registry entry, its label for messages and its component id."""
    entry = registry.get("attack", cell.attack.name)
    label = f"attack {cell.attack.name!r} (plugin {entry.plugin}, {entry.distribution} {entry.version})"
    return entry, label, f"attack:{cell.attack.name}"


def benign_plan(seed: int, salt: Sequence[int], n: int) -> BenignPlan:
    """The cell's benign traffic plan (evaluator side; salted like the server's streams)."""
    return BenignPlan.draw(n, np.random.default_rng([seed, Stream.BENIGN_PLAN, *salt]))


def attacker_stream(endpoint: Any, benign: Any, cell: CellSpec, salt: Sequence[int],
                    test_x: np.ndarray) -> InterleavedEndpoint:
    """The attacker's defended ``endpoint`` with the benign clients (``benign(x, id)``
    answers them on their own timing stream) interleaved by the cell's plan."""
    return InterleavedEndpoint(attack=lambda x, cid: endpoint.respond(x, client_id=cid),
                               benign=benign, plan=benign_plan(cell.seed, salt, len(test_x)),
                               test_x=test_x, budget=cell.budget,
                               failure_of=lambda: endpoint.failure, report_of=endpoint.report)


def _finish_theft(stolen: StolenModel, oracle: Oracle, mixed: InterleavedEndpoint,
                  num_classes: int, label: str, component: str) -> Theft:
    stolen = _check_stolen(stolen, num_classes, label, component)
    diagnostics = _jsonable_diagnostics(stolen, label, component)
    served = oracle.served_exits()
    try:
        exit_estimation_accuracy(stolen.estimated_exits, served)
    except ValueError as exc:
        raise ComponentFailure(f"{label}: {exc}", component) from None
    benign = mixed.finish()
    return Theft(stolen, served, oracle.served_latencies(), oracle.queries_used,
                 oracle.refused_count, diagnostics, benign, mixed.plan, mixed.report())


def steal(cell: CellSpec, registry: Registry, server: Server, device: str,
          env: CellEnvironment) -> Theft:
    """Phase 1 in-process (``isolation=none``): the attack against a defended endpoint."""
    entry, label, component = attack_label(registry, cell)
    attack = build_component(entry.cls, cell.attack.params)
    data = server.victim.data
    endpoint = server.endpoint(Stream.ATTACK_DEFENSE, Stream.ATTACK_TIMING, client_id="attacker")
    benign_timing = server.rng(Stream.BENIGN_TIMING)
    mixed = attacker_stream(
        endpoint, lambda x, cid: endpoint.respond(x, client_id=cid, timing_rng=benign_timing),
        cell, server.salt, data.test.x)
    oracle = Oracle(mixed, cell.budget, cell.output, data.input_shape, data.input_range,
                    allow_truth=entry.cls.reference)
    ctx = attack_context(cell, server.victim, server.served, device, env, registry)
    pool = attacker_pool(registry, cell.threat.pool, data, env.data_root, cell.victim.name)
    try:
        stolen = attack.steal(oracle, pool, ctx)
    except Exception as exc:
        if endpoint.failure is not None:  # the defense failed while the attack queried
            raise endpoint.failure from None
        if isinstance(exc, ComponentFailure) and exc.component is not None:
            raise
        reason = str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
        raise ComponentFailure(f"{label} raised {reason}", component) from exc
    if endpoint.failure is not None:  # the attack swallowed the defense's failure
        raise endpoint.failure
    return _finish_theft(stolen, oracle, mixed, data.num_classes, label, component)


def score_theft(victim: TrainedVictim, served: ServedModel, theft: Theft,
                device: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Phase 2: strategy-stealing success against the evaluator's own undefended victim."""
    test = victim.data.test
    victim_probs = served.exit_probs(test.x)
    victim_exits = victim.strategy.exits(victim_probs)
    victim_labels = answering_probs(victim_probs, victim_exits).argmax(1)
    stolen = theft.stolen
    sub_probs = exit_probabilities(stolen.model, test.x, device)
    sub_exits = stolen.strategy.exits(sub_probs)
    sub_labels = answering_probs(sub_probs, sub_exits).argmax(axis=1)
    metrics: dict[str, Any] = strategy_scores(
        victim_exits=victim_exits, victim_labels=victim_labels,
        victim_cost=served.cost_fraction, sub_exits=sub_exits, sub_labels=sub_labels,
        sub_cost=stolen.model.cost_fraction, y_true=test.y)
    metrics.update(final_exit_scores(victim_exits=victim_exits, victim_labels=victim_labels,
                                     victim_cost=served.cost_fraction,
                                     final_labels=sub_probs[-1].argmax(axis=1)))
    metrics["exit_estimation_accuracy"] = exit_estimation_accuracy(stolen.estimated_exits,
                                                                   theft.served_exits)
    answered = theft.served_exits >= 0
    metrics["query_bayes_exit_accuracy"] = (
        bayes_exit_accuracy(theft.served_latency_s[answered], theft.served_exits[answered])
        if answered.sum() >= 8 else None)
    metrics["queries_used"] = float(theft.queries_used)
    metrics["queries_refused"] = float(theft.queries_refused)
    diagnostics = {
        "victim_exit_histogram": np.bincount(victim_exits,
                                             minlength=served.num_exits).tolist(),
        "substitute_exit_histogram": np.bincount(sub_exits,
                                                 minlength=stolen.model.num_exits).tolist(),
        "stolen_strategy": stolen.strategy.to_json(),
        "exit_confusion": exit_confusion(victim_exits, sub_exits, sub_labels == victim_labels,
                                         max(served.num_exits, stolen.model.num_exits)),
        "query_latency_histogram": latency_histogram(theft.served_latency_s, theft.served_exits,
                                                     served.num_exits),
    }
    return metrics, diagnostics


def measure_defense(server: Any, test: Split, seed: int, theft: Theft) -> dict[str, Any]:
    """Phase 3: the defense's cost and the remaining leakage, from the benign clients.

    The defended responses are what the benign clients received in the attack's stream
    (phase 1); the undefended reference answers the same chunks in the same order.
    ``server`` is a local :class:`Server` or the evaluator's proxy to a server worker.
    """
    plain = server.endpoint(Stream.UNDEFENDED_DEFENSE, Stream.BENIGN_TIMING, client_id="benign",
                            defended=False)
    r_def = theft.benign
    r_undef = replay(theft.plan, lambda x, cid: plain.respond(x, client_id=cid), test.x)
    labels_def = np.where(r_def.admitted, np.nan_to_num(r_def.probs).argmax(1), -1)
    metrics = defense_costs(
        labels_def=labels_def, labels_undef=r_undef.probs.argmax(1), y_true=test.y,
        latency_def=r_def.latency_s, latency_undef=r_undef.latency_s,
        latency_full=server.full_latency(test.x), cost_def=r_def.cost_fraction,
        cost_undef=r_undef.cost_fraction)
    metrics.update(leakage_metrics(r_def, seed))
    return metrics


def leakage_metrics(response: EndpointResponse, seed: int) -> dict[str, float | None]:
    """What the answered benign latencies reveal about the exit that served and about the
    exit the victim's policy intended, each beside its chance level (majority-exit rate)."""
    ok = response.admitted
    out: dict[str, float | None] = {}
    for suffix, exits in (("", response.exits), ("_intended", response.policy_exits)):
        lat, ex = response.latency_s[ok], exits[ok]
        out[f"leakage_bits{suffix}"] = leakage_bits(lat, ex, seed=seed) if ok.any() else 0.0
        out[f"bayes_exit_accuracy{suffix}"] = bayes_exit_accuracy(lat, ex) if ok.any() else None
        out[f"chance_exit_accuracy{suffix}"] = majority_exit_rate(ex) if ok.any() else None
    return out


def run_cell(cell: CellSpec, registry: Registry, env: CellEnvironment) -> tuple[dict, dict]:
    """Execute one cell's three phases; returns (metrics, diagnostics)."""
    device = resolve_device(cell.device)
    if cell.isolation == "none":
        server = Server.build(cell, registry, env, device)
        theft = steal(cell, registry, server, device, env)
        metrics, theft_diagnostics = score_theft(server.victim, server.served, theft, device)
        metrics.update(measure_defense(server, server.victim.data.test, cell.seed, theft))
        return metrics, _diagnostics(server.victim, server.served, server.info.latency_quantiles,
                                     theft, theft_diagnostics, {"mode": "none"})
    from harness.isolation.evaluator import run_isolated

    return run_isolated(cell, registry, env, device)


def _diagnostics(victim: TrainedVictim, served: ServedModel, quantiles: Any, theft: Theft,
                 theft_diagnostics: dict[str, Any], isolation: dict[str, Any]) -> dict[str, Any]:
    diagnostics = {
        "victim_thresholds": list(victim.strategy.thresholds),
        "victim_policy": victim.strategy.policy.name,
        **theft_diagnostics,
        "victim_cost_fraction": list(served.cost_fraction),
        "victim_weights_hash": victim.weights_hash,
        "server_latency_quantiles_s": [list(map(float, q)) for q in quantiles],
        "attack": theft.diagnostics,
        "defense_report": theft.defense_report,
        "isolation": {**isolation, "secret": secret_mode()},
    }
    if victim.details:  # only victims that say more (cells of the others are unchanged)
        diagnostics["victim_details"] = _jsonable(dict(victim.details))
    return diagnostics


def _jsonable(obj: Any) -> Any:
    """Convert numpy containers in diagnostics to JSON-friendly values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
