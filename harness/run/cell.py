"""Run one cell: victim -> serve -> defense -> oracle -> attack -> scores (DESIGN section 4).

Random streams are derived from the cell seed, one per consumer, so adding randomness
in one component never shifts another's: 1 defense, 2 timing, 3 attack (through
``AttackContext.rng``), 4-6 benign traffic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.components import build_component
from harness.errors import ComponentFailure, ConfigError, HarnessError
from harness.model import MultiExitNet, exit_probabilities
from harness.plugins.registry import Registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import AttackContext, Defense, StolenModel, TrainedVictim, VictimContext
from harness.report.leakage import bayes_exit_accuracy, leakage_bits
from harness.report.scoring import defense_costs, exit_estimation_accuracy, strategy_scores
from harness.run.grid import CellSpec
from harness.serving.devices import resolve_device
from harness.serving.endpoint import Endpoint
from harness.serving.oracle import Oracle
from harness.strategy import OutputStrategy, answering_probs
from harness.timing.models import AnalyticTiming, TimingModel


@dataclass(frozen=True)
class CellEnvironment:
    """Run-level settings that do not change a cell's result."""

    cache_dir: Path
    data_root: Path | None
    profile_path: Path | None = None


def _label(registry: Registry, kind: str, name: str) -> str:
    entry = registry.get(kind, name)
    return f"{kind} {name!r} (plugin {entry.plugin}, {entry.distribution} {entry.version})"


def make_timing(cell: CellSpec, env: CellEnvironment, victim: TrainedVictim) -> TimingModel | None:
    """The cell's timing model (None = live); a replay profile must fit the victim."""
    params = json.loads(cell.timing_params_json)
    if cell.timing == "live":
        return None
    if cell.timing == "replay":
        from harness.timing.models import ReplayTiming
        from harness.timing.profiles import LatencyProfile

        if env.profile_path is None:
            raise ConfigError("timing=replay needs profile=PATH")
        profile = LatencyProfile.load(env.profile_path)
        profile.validate_for(victim.name, victim.model.num_exits, victim.weights_hash)
        return ReplayTiming(profile)
    try:
        return AnalyticTiming(**params)
    except TypeError as exc:
        raise ConfigError(f"timing=analytic: {exc}; valid timing parameters: base_s, full_s, "
                          "sigma, tail_prob, tail_alpha, tail_scale") from None


def prepare_victim(registry: Registry, cell: CellSpec, env: CellEnvironment,
                   device: str) -> TrainedVictim:
    """The cell's victim, trained or loaded from the cache."""
    return prepare_registered_victim(registry, cell.victim.name, cell.victim.params, env, device)


def prepare_registered_victim(registry: Registry, name: str, params: dict[str, Any],
                              env: CellEnvironment, device: str) -> TrainedVictim:
    """Load a registered victim's dataset and train (or load from cache) the victim."""
    victim = build_component(registry.get("victim", name).cls, params)
    data = registry.get("dataset", victim.dataset).cls().load(env.data_root)
    return victim.prepare(data, VictimContext(env.cache_dir, device, Toolbox(registry)))


def substitute_exits(stolen: StolenModel, x: np.ndarray, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Exits and labels of the substitute under its stolen strategy (float64, as served)."""
    probs = exit_probabilities(stolen.model, x, device)
    exits = stolen.strategy.exits(probs)
    return exits, answering_probs(probs, exits).argmax(axis=1)


def _check_stolen(stolen: Any, num_classes: int, label: str, component: str) -> StolenModel:
    if not isinstance(stolen, StolenModel):
        raise ComponentFailure(f"{label}: steal() returned {type(stolen).__name__}, expected "
                               "harness.protocol.StolenModel", component)
    if not isinstance(stolen.model, MultiExitNet):
        raise ComponentFailure(f"{label}: the substitute must be a harness.model.MultiExitNet",
                               component)
    if not isinstance(stolen.strategy, OutputStrategy):
        raise ComponentFailure(f"{label}: the strategy must be a harness.strategy.OutputStrategy",
                               component)
    try:
        stolen.strategy.validate(stolen.model.num_exits, num_classes, owner=label)
    except ConfigError as exc:
        raise ComponentFailure(str(exc), component) from None
    return stolen


def _endpoint(victim, served, defense, timing, seed, streams, label, repeats,
              component=None) -> Endpoint:
    return Endpoint(served, victim.strategy, defense, timing,
                    np.random.default_rng([seed, streams[0]]),
                    np.random.default_rng([seed, streams[1]]),
                    num_classes=victim.model.num_classes, defense_label=label, repeats=repeats,
                    defense_component=component)


def _jsonable_diagnostics(stolen: StolenModel, label: str, component: str) -> dict[str, Any]:
    """The attack's diagnostics as JSON, or the attack's failure."""
    try:
        diagnostics = _jsonable(dict(stolen.diagnostics))
        json.dumps(diagnostics, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ComponentFailure(f"{label}: diagnostics are not JSON-serialisable ({exc}); return "
                               "numbers, strings, lists and dicts", component) from None
    return diagnostics


def run_cell(cell: CellSpec, registry: Registry, env: CellEnvironment) -> tuple[dict, dict]:
    """Execute one cell; returns (metrics, diagnostics). Component errors are labelled."""
    device = resolve_device(cell.device)
    victim = prepare_victim(registry, cell, env, device)
    backend = registry.get("backend", cell.backend).cls()
    served = backend.load(victim, device, env.cache_dir)
    timing = make_timing(cell, env, victim)
    d_label = _label(registry, "defense", cell.defense.name)
    a_label = _label(registry, "attack", cell.attack.name)
    defense = build_component(registry.get("defense", cell.defense.name).cls, cell.defense.params)
    attack_entry = registry.get("attack", cell.attack.name)
    attack = build_component(attack_entry.cls, cell.attack.params)
    data = victim.data

    d_comp, a_comp = f"defense:{cell.defense.name}", f"attack:{cell.attack.name}"
    defense.reset()
    endpoint = _endpoint(victim, served, defense, timing, cell.seed, (1, 2), d_label, cell.repeats,
                         d_comp)
    oracle = Oracle(endpoint, cell.budget, cell.output, data.input_shape, data.input_range,
                    allow_truth=attack_entry.cls.reference)
    ctx = AttackContext(seed=cell.seed, device=device, budget=cell.budget, output=cell.output,
                        input_shape=data.input_shape, num_classes=data.num_classes,
                        input_range=data.input_range, num_exits=victim.model.num_exits,
                        victim_family=victim.family, cache_dir=env.cache_dir,
                        toolbox=Toolbox(registry))
    try:
        stolen = attack.steal(oracle, data.attacker.x.copy(), ctx)
    except Exception as exc:
        if endpoint.failure is not None:  # the defense failed while the attack queried
            raise endpoint.failure from None
        if isinstance(exc, ComponentFailure) and exc.component is not None:
            raise
        reason = str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
        raise ComponentFailure(f"{a_label} raised {reason}", a_comp) from exc
    if endpoint.failure is not None:  # the attack swallowed the defense's failure
        raise endpoint.failure
    stolen = _check_stolen(stolen, data.num_classes, a_label, a_comp)
    attack_diagnostics = _jsonable_diagnostics(stolen, a_label, a_comp)

    # Strategy-stealing success against the undefended victim on the test split.
    test = data.test
    victim_probs = served.exit_probs(test.x)
    victim_exits = victim.strategy.exits(victim_probs)
    victim_labels = answering_probs(victim_probs, victim_exits).argmax(1)
    sub_exits, sub_labels = substitute_exits(stolen, test.x, device)
    metrics: dict[str, float | None] = strategy_scores(
        victim_exits=victim_exits, victim_labels=victim_labels,
        victim_cost=served.cost_fraction, sub_exits=sub_exits, sub_labels=sub_labels,
        sub_cost=stolen.model.cost_fraction, y_true=test.y)
    served_log = oracle.served_exits()
    try:
        metrics["exit_estimation_accuracy"] = exit_estimation_accuracy(stolen.estimated_exits,
                                                                       served_log)
    except ValueError as exc:
        raise ComponentFailure(f"{a_label}: {exc}", a_comp) from None
    answered = served_log >= 0
    query_latency = oracle.served_latencies()[answered]
    metrics["query_bayes_exit_accuracy"] = (
        bayes_exit_accuracy(query_latency, served_log[answered])
        if answered.sum() >= 8 else None)
    metrics["queries_used"] = float(oracle.queries_used)
    metrics["queries_refused"] = float(oracle.refused_count)

    # Defense cost and leakage on benign test traffic.
    defense.reset()
    defended = _endpoint(victim, served, defense, timing, cell.seed, (4, 5), d_label, cell.repeats,
                         d_comp)
    plain = _endpoint(victim, served, Defense(), timing, cell.seed, (6, 5),
                      "undefended", cell.repeats)
    r_def, r_undef = defended.respond(test.x), plain.respond(test.x)
    full = _full_latency(served, timing, len(test), cell.seed, test.x, cell.repeats)
    labels_def = np.where(r_def.admitted, np.nan_to_num(r_def.probs).argmax(1), -1)
    metrics.update(defense_costs(
        labels_def=labels_def, labels_undef=r_undef.probs.argmax(1), y_true=test.y,
        latency_def=r_def.latency_s, latency_undef=r_undef.latency_s, latency_full=full,
        cost_def=r_def.cost_fraction, cost_undef=r_undef.cost_fraction))
    ok = r_def.admitted
    metrics["leakage_bits"] = (leakage_bits(r_def.latency_s[ok], r_def.exits[ok], seed=cell.seed)
                               if ok.any() else 0.0)
    metrics["bayes_exit_accuracy"] = (bayes_exit_accuracy(r_def.latency_s[ok], r_def.exits[ok])
                                      if ok.any() else None)
    diagnostics = {
        "victim_thresholds": list(victim.strategy.thresholds),
        "victim_policy": victim.strategy.policy.name,
        "victim_exit_histogram": np.bincount(victim_exits, minlength=served.num_exits).tolist(),
        "substitute_exit_histogram": np.bincount(
            sub_exits, minlength=stolen.model.num_exits).tolist(),
        "stolen_strategy": stolen.strategy.to_json(),
        "victim_cost_fraction": list(served.cost_fraction),
        "victim_weights_hash": victim.weights_hash,
        "attack": attack_diagnostics,
    }
    return metrics, diagnostics


def _full_latency(served, timing, n, seed, x, repeats) -> np.ndarray:
    last = np.full(n, served.num_exits - 1, dtype=np.int64)
    if timing is None:
        return served.serve(x, exits=last, repeats=repeats).latency_s
    return timing.latencies(last, served.cost_fraction, np.random.default_rng([seed, 7]))


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
