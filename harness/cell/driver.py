"""The one cell driver: a cell in three named phases, whatever the isolation (docs/design.md section 4).

:func:`run_cell` drives every cell; its :class:`~harness.cell.roles.Roles` decide only
where the server and the attacker run. The seams, in order:

- **the victim** - the evaluator prepares its own copy (:func:`prepare_victim`), the only
  writer of the victim cache;
- **the server is built** - ``session.start_server`` from a
  :class:`~harness.cell.roles.ServerRequest` (the cell with its attack hidden);
- **the attacker starts** - ``session.start_attacker`` with its
  :class:`~harness.cell.attacker.AttackerRequest`;
- **benign clients join the stream** - :func:`attacker_stream` interleaves them with the
  attacker's batches on the attack's own endpoint (:mod:`harness.cell.benign`);
- **the stolen model is rebuilt and scored** - :func:`steal` rebuilds the attack's record
  through the registry (:func:`~harness.cell.stolen.rebuild_stolen`), or leaves it to a
  sandboxed scorer when it is built from untrusted code (:mod:`harness.isolation.scorer`);
  :func:`score_theft` scores its outputs against the evaluator's own undefended victim.

Phases: 1. :func:`steal` (the attack against a defended endpoint; the oracle keeps the
private log of true exits), 2. :func:`score_theft` (the substitute and its strategy on
the held-out test split, and how well the attack estimated exits), 3.
:func:`measure_defense` (what the benign clients received against an undefended endpoint
answering the same chunks: the defense's cost and the leakage that remains). Every
stream is named and salted (:class:`harness.cell.server.Stream`); component errors name
the component.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from harness.cell.attacker import AttackerRequest
from harness.cell.benign import BenignPlan, BenignTraffic, InterleavedEndpoint, replay
from harness.cell.pool import attacker_pool
from harness.cell.roles import (
    HIDDEN_ATTACK,
    AttackerHandle,
    EndpointHandle,
    Roles,
    ServerHandle,
    ServerRequest,
    Session,
)
from harness.cell.scoring_target import (
    VictimView,
    deployed_view,
    stolen_strategy_scores,
    victim_view,
)
from harness.cell.server import Stream, prepare_registered_victim, serve_victim
from harness.cell.spec import CellEnvironment, CellSpec
from harness.cell.stolen import StolenModelError, checked_recipe, rebuild_stolen, untrusted_code
from harness.cell.substitute import SandboxedStolen, SubstituteOutputs, model_outputs
from harness.errors import ComponentFailure
from harness.io.jsonable import to_jsonable
from harness.io.secret import secret_mode, stream_salt
from harness.metrics.capacity import (
    channel_capacity,
    estimation_per_input,
    input_groups,
    monte_carlo_capacity,
)
from harness.metrics.leakage import bayes_exit_accuracy, leakage_bits, majority_exit_rate
from harness.metrics.scoring import (
    defense_costs,
    exit_confusion,
    exit_estimation_accuracy,
    latency_histogram,
)
from harness.plugins.registry import Registry
from harness.protocol import DatasetSplits, ServedModel, Split, StolenModel, TrainedVictim
from harness.serving.devices import resolve_device
from harness.serving.endpoint import EndpointResponse
from harness.serving.oracle import Oracle
from harness.strategy import OutputStrategy


@dataclass(frozen=True)
class Theft:
    """What phase 1 leaves for scoring: the stolen model (rebuilt here, or left to the
    sandboxed scorer when it needs untrusted code) and the oracle's private log."""

    stolen: StolenModel | SandboxedStolen
    served_exits: np.ndarray
    served_latency_s: np.ndarray
    served_inputs: np.ndarray
    queries_used: int
    queries_refused: int
    benign: BenignTraffic
    defense_report: dict[str, float]
    attacker_id: str
    """The client id the attacker's batches came with (the capacity's draws reuse it)."""


def prepare_victim(registry: Registry, cell: CellSpec, env: CellEnvironment,
                   device: str) -> TrainedVictim:
    """The cell's victim, trained or loaded from the cache."""
    return prepare_registered_victim(registry, cell.victim.name, cell.victim.params, env, device)


def run_cell(cell: CellSpec, registry: Registry, env: CellEnvironment,
             roles: Roles) -> tuple[dict[str, Any], dict[str, Any]]:
    """Execute one cell's three phases with the server and attacker where ``roles`` put
    them; returns (metrics, diagnostics)."""
    device = resolve_device(cell.settings.device)
    with roles.session(cell, registry, env) as session:
        victim = prepare_victim(registry, cell, env, device)
        salt = stream_salt(cell.victim.identity)
        server = session.start_server(ServerRequest(replace(cell, attack=HIDDEN_ATTACK), env,
                                                    device, victim, salt))
        pool = attacker_pool(registry, cell.settings.threat.pool, victim.data, env.data_root,
                             cell.victim.name)
        attacker = session.start_attacker(AttackerRequest.for_cell(cell, victim, pool, device))
        served = serve_victim(registry, cell.settings.backend, victim, device, env)
        server.wait_ready()
        theft = steal(cell, registry, server, attacker, victim.data, salt)
        session.stop_attacker()
        label = registry.get("defense", cell.defense.name).label(cell.defense.display)
        deployed = deployed_view(cell.defense.name, label, registry, victim, served,
                                 server.deployed_strategy, theft.benign.rows,
                                 theft.benign.response.exits)
        reference = victim_view(victim, served) if deployed is None else deployed.view
        outputs = substitute_outputs(theft.stolen, victim.data.test.x, device, session)
        intended = victim.strategy if deployed is None else deployed.strategy
        capacity = capacity_of(victim, served, theft,
                               None if cell.settings.timing == "live" else server,
                               intended=intended)
        metrics, theft_diagnostics = score_theft(victim, served, theft, outputs, reference,
                                                 capacity)
        if deployed is not None:
            theft_diagnostics["deployed_strategy"] = deployed.diagnostics(
                served, theft.served_inputs, theft.served_exits)
        metrics.update(measure_defense(server, victim.data.test, cell.seed, theft,
                                       intended=reference.exits))
        quantiles = server.latency_quantiles
    return metrics, diagnostics(victim, served, quantiles, theft, theft_diagnostics,
                                session.describe())


def benign_plan(seed: int, salt: Sequence[int], n: int, budget: int) -> BenignPlan:
    """The cell's benign traffic plan (evaluator side; salted like the server's streams)."""
    return BenignPlan.draw(n, np.random.default_rng([seed, Stream.BENIGN_PLAN, *salt]),
                           batches=budget)


def attacker_stream(endpoint: EndpointHandle, cell: CellSpec, salt: Sequence[int],
                    test_x: np.ndarray) -> InterleavedEndpoint:
    """The attacker's defended ``endpoint`` with the benign clients interleaved by the cell's
    plan; they are answered by the same defense, on the benign timing stream."""
    return InterleavedEndpoint(
        attack=lambda x, cid: endpoint.respond(x, client_id=cid),
        benign=lambda x, cid: endpoint.respond(x, client_id=cid, benign=True),
        plan=benign_plan(cell.seed, salt, len(test_x), cell.settings.budget), test_x=test_x,
        budget=cell.settings.budget, failure_of=lambda: endpoint.failure,
        report_of=endpoint.report)


def steal(cell: CellSpec, registry: Registry, server: ServerHandle, attacker: AttackerHandle,
          data: DatasetSplits, salt: Sequence[int]) -> Theft:
    """Phase 1: the attack against a defended endpoint; its result rebuilt and checked."""
    entry = registry.get("attack", cell.attack.name)
    label, component = entry.label(), f"attack:{cell.attack.name}"
    endpoint = server.endpoint(Stream.ATTACK_DEFENSE, Stream.ATTACK_TIMING, client_id="attacker")
    mixed = attacker_stream(endpoint, cell, salt, data.test.x)
    oracle = Oracle(mixed, cell.settings.budget, cell.settings.output, data.input_shape,
                    data.input_range, allow_truth=entry.cls.reference)
    record = attacker.steal(oracle, label=label, component=component,
                            defense_failure=lambda: endpoint.failure)
    if endpoint.failure is not None:  # the attack swallowed the defense's failure
        raise endpoint.failure
    try:
        shape = tuple(data.input_shape)
        owners = untrusted_code(record, registry)
        if owners:  # checked here as data; its code runs only in the sandboxed scorer
            recipe = checked_recipe(record, input_shape=shape, num_classes=data.num_classes)
            stolen = SandboxedStolen(record, tuple(sorted({e.plugin for e in owners})), shape,
                                     data.num_classes, recipe.num_exits)
        else:
            stolen = rebuild_stolen(record, registry, input_shape=shape,
                                    num_classes=data.num_classes)
        served = oracle.served_exits()
        exit_estimation_accuracy(stolen.estimated_exits, served)
    except (StolenModelError, ValueError) as exc:
        raise ComponentFailure(f"{label}: {exc}", component) from None
    benign = mixed.finish()
    return Theft(stolen, served, oracle.served_latencies(), oracle.served_inputs(),
                 oracle.queries_used, oracle.refused_count, benign, mixed.report(),
                 mixed.plan.attacker_id)


def substitute_outputs(stolen: StolenModel | SandboxedStolen, x: np.ndarray, device: str,
                       session: Session) -> SubstituteOutputs:
    """The substitute's exits and labels on the test inputs: computed here when it is
    built from trusted code, else by a sandboxed scorer (which imports only the plugins
    that provide its code, and never sees the labels or the victim)."""
    if isinstance(stolen, StolenModel):
        return model_outputs(stolen, x, device)
    label = ", ".join(stolen.owners)
    try:
        return stolen.checked(session.score_sandboxed(stolen, x), len(x))
    except StolenModelError as exc:
        raise ComponentFailure(f"the substitute (code of untrusted plugin {label}): {exc}",
                               f"plugin:{label}") from None


def score_theft(victim: TrainedVictim, served: ServedModel, theft: Theft,
                sub: SubstituteOutputs, reference: VictimView, capacity: ChannelCapacity
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Phase 2: strategy-stealing success against the evaluator's own undefended victim."""
    test = victim.data.test
    victim_exits, victim_labels = reference.exits, reference.labels
    stolen = theft.stolen
    sub_exits, sub_labels = sub.exits, sub.labels
    metrics = stolen_strategy_scores(reference, served.cost_fraction, sub, test.y)
    metrics["exit_estimation_accuracy"] = exit_estimation_accuracy(stolen.estimated_exits,
                                                                   theft.served_exits)
    answered = theft.served_exits >= 0
    metrics["query_bayes_exit_accuracy"] = (
        bayes_exit_accuracy(theft.served_latency_s[answered], theft.served_exits[answered])
        if answered.sum() >= 8 else None)
    metrics.update(capacity.metrics)
    metrics["queries_used"] = float(theft.queries_used)
    metrics["queries_refused"] = float(theft.queries_refused)
    diagnostics = {
        "victim_exit_histogram": np.bincount(victim_exits,
                                             minlength=served.num_exits).tolist(),
        "substitute_exit_histogram": np.bincount(sub_exits, minlength=sub.num_exits).tolist(),
        "stolen_strategy": sub.strategy,
        "exit_confusion": exit_confusion(victim_exits, sub_exits, sub_labels == victim_labels,
                                         max(served.num_exits, sub.num_exits)),
        "query_latency_histogram": latency_histogram(theft.served_latency_s, theft.served_exits,
                                                     served.num_exits),
        "capacity": capacity.diagnostics,
    }
    return metrics, diagnostics


CAPACITY_ROWS = 2000
"""Rows of fresh draws the capacity's Monte Carlo sample aims at (2 to 16 rounds of the
attack's distinct inputs; about 1 s of server time per cell)."""
CAPACITY_BATCH = 256


@dataclass(frozen=True)
class ChannelCapacity:
    """The cell's capacity metrics and what the diagnostics say of how they were made."""

    metrics: dict[str, float | None]
    diagnostics: dict[str, Any]


def capacity_of(victim: TrainedVictim, served: ServedModel, theft: Theft,
                server: ServerHandle | None, *,
                intended: OutputStrategy | None = None) -> ChannelCapacity:
    """What the timing channel carried for the attack's own queries, against the exits the
    victim's strategy intended for them (:mod:`harness.metrics.capacity`): the better of
    the cross-validated estimate on its observations and, with ``server`` (modelled
    timings), the classifier fitted on fresh draws of the same inputs through the cell's
    own server; the attack's per-input estimation accuracy against the same exits, and
    the slack between them. The draws come with the attacker's own client id.
    ``intended`` is the strategy whose decisions count as intended: the one the server
    deploys (the victim's by default; a randomized one's decision before its draw)."""
    x = theft.served_inputs
    strategy = victim.strategy if intended is None else intended
    intended_exits = (strategy.exits(served.exit_probs(x)) if len(x)
                      else np.zeros(0, dtype=np.int64))
    groups = input_groups(x) if len(x) else np.zeros(0, dtype=np.int64)
    cv = channel_capacity(theft.served_latency_s, intended_exits, groups)
    notes: dict[str, Any] = {"cross_validated": cv.to_json()}
    best = cv
    if server is None:
        notes["monte_carlo"] = "not drawn (timing=live: measured latencies; the figure is " \
                               "the cross-validated estimate)"
    elif len(x):
        try:
            mc_latency, mc_intended = capacity_draws(server, x, intended_exits, groups,
                                                     theft.attacker_id)
            mc = monte_carlo_capacity(theft.served_latency_s, intended_exits, groups, mc_latency,
                                      mc_intended)
            notes["monte_carlo"] = (mc.to_json() | {"rows": len(mc_latency)} if mc else
                                    "the draws missed an intended exit")
            if mc is not None and mc.estimate > best.estimate:
                best = mc
        except ComponentFailure as exc:  # the defense failed on the draws: say so
            notes["monte_carlo"] = f"not drawn: {exc}"[:500]
    estimated = theft.stolen.estimated_exits
    estimation = (None if estimated is None else
                  estimation_per_input(estimated, intended_exits, groups, theft.served_exits >= 0))
    return ChannelCapacity({
        "capacity_exit_accuracy": best.estimate,
        "capacity_exit_accuracy_lo": best.ci95[0],
        "capacity_exit_accuracy_hi": best.ci95[1],
        "exit_estimation_accuracy_intended": estimation,
        "capacity_slack": None if estimation is None else best.estimate - estimation},
        {**best.to_json(), **notes})


def capacity_draws(server: ServerHandle, x: np.ndarray, intended: np.ndarray,
                   groups: np.ndarray, client_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Fresh latencies of the attack's distinct inputs through the cell's own server (its
    defense, freshly reset, and its timing, on streams of their own), several rounds:
    (latency per row, NaN where refused; the intended exit of each row)."""
    _, first = np.unique(groups, return_index=True)
    inputs, exits = x[first], intended[first]
    rounds = int(np.clip(np.ceil(CAPACITY_ROWS / max(len(inputs), 1)), 2, 16))
    endpoint = server.endpoint(Stream.CAPACITY_DEFENSE, Stream.CAPACITY_TIMING,
                               client_id=client_id)
    latency, labels = [], []
    for _ in range(rounds):
        for start in range(0, len(inputs), CAPACITY_BATCH):
            response = endpoint.respond(inputs[start:start + CAPACITY_BATCH],
                                        client_id=client_id)
            latency.append(np.where(response.admitted, response.latency_s, np.nan))
            labels.append(exits[start:start + CAPACITY_BATCH])
    if endpoint.failure is not None:
        raise endpoint.failure
    return np.concatenate(latency), np.concatenate(labels)


def measure_defense(server: ServerHandle, test: Split, seed: int, theft: Theft, *,
                    intended: np.ndarray) -> dict[str, Any]:
    """Phase 3: the defense's cost and the remaining leakage, from the benign clients.

    The defended responses are what the benign clients (the mirror of the attacker's
    traffic among them) received in the attack's stream (phase 1); the undefended
    reference answers the same batches in the same order. Each test input weighs the
    same in the accuracy and refusal costs, however often the mirror sent it.
    ``intended`` is the victim's own exit for each test input (the evaluator's copy).
    """
    plain = server.endpoint(Stream.UNDEFENDED_DEFENSE, Stream.BENIGN_TIMING, client_id="benign",
                            defended=False)
    r_def = theft.benign.response
    r_undef = replay(theft.benign.batches, lambda x, cid: plain.respond(x, client_id=cid),
                     test.x).response
    rows = theft.benign.rows
    labels_def = np.where(r_def.admitted, np.nan_to_num(r_def.probs).argmax(1), -1)
    metrics = defense_costs(
        labels_def=labels_def, labels_undef=r_undef.probs.argmax(1), y_true=test.y[rows],
        latency_def=r_def.latency_s, latency_undef=r_undef.latency_s,
        latency_full=server.full_latency(test.x), cost_def=r_def.cost_fraction,
        cost_undef=r_undef.cost_fraction, inputs=rows)
    metrics.update(leakage_metrics(r_def, np.asarray(intended)[rows], seed))
    return metrics


def leakage_metrics(response: EndpointResponse, intended: np.ndarray,
                    seed: int) -> dict[str, float | None]:
    """What the answered benign latencies reveal about the exit that served and about the
    exit the victim's policy ``intended``, each beside its chance level (majority-exit rate)."""
    ok = response.admitted
    out: dict[str, float | None] = {}
    for suffix, exits in (("", response.exits), ("_intended", np.asarray(intended))):
        lat, ex = response.latency_s[ok], exits[ok]
        out[f"leakage_bits{suffix}"] = leakage_bits(lat, ex, seed=seed) if ok.any() else 0.0
        out[f"bayes_exit_accuracy{suffix}"] = bayes_exit_accuracy(lat, ex) if ok.any() else None
        out[f"chance_exit_accuracy{suffix}"] = majority_exit_rate(ex) if ok.any() else None
    return out


def diagnostics(victim: TrainedVictim, served: ServedModel, quantiles: Any, theft: Theft,
                theft_diagnostics: dict[str, Any], isolation: dict[str, Any]) -> dict[str, Any]:
    """The cell's diagnostics: the victim, the theft, the server and what isolation enforced."""
    out = {
        "victim_thresholds": list(victim.strategy.thresholds),
        "victim_policy": victim.strategy.policy.name,
        **theft_diagnostics,
        "victim_cost_fraction": list(served.cost_fraction),
        "victim_weights_hash": victim.weights_hash,
        "server_latency_quantiles_s": [list(map(float, q)) for q in quantiles],
        "attack": theft.stolen.diagnostics,
        "defense_report": theft.defense_report,
        "isolation": {**isolation, "secret": secret_mode()},
    }
    if victim.details:  # only victims that say more (cells of the others are unchanged)
        out["victim_details"] = to_jsonable(dict(victim.details))
    return out
