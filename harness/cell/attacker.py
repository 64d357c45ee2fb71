"""The attacker's side of a cell: what it is told, its context, and running its attack.

:class:`AttackerRequest` is everything an attack receives besides its oracle: its own
name and parameters, its unlabeled pool, the task, and what the threat model grants
(:func:`threat_view`). :meth:`AttackerRequest.context` is the one place an
:class:`~harness.protocol.AttackContext` is made, and :func:`run_attack` the one place an
attack runs, whether in the evaluator's process (``isolation=none``), in a client
worker (``isolation=process``), against a remote server (``harness attack``) or in the
conformance kit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from harness.cell.spec import CellSpec, ThreatModel
from harness.components import build_component
from harness.errors import ComponentFailure
from harness.plugins.registry import Registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import (
    AttackContext,
    OracleHandle,
    OutputMode,
    PublicDeployment,
    StolenModel,
    TrainedVictim,
)
from harness.serving.own_server import build_own_server


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


def public_deployment(cell: CellSpec) -> PublicDeployment:
    """What ``cell`` makes public about how its victim is served: backend, output, timing,
    and the defense with its parameters unless ``threat.defense=hidden`` (never its key)."""
    settings = cell.settings
    known = settings.threat.knows_defense
    return PublicDeployment(backend=settings.backend, output=settings.output,
                            timing=settings.timing,
                            timing_params_json=settings.timing_params_json,
                            repeats=settings.repeats,
                            defense=cell.defense.name if known else None,
                            defense_params=dict(cell.defense.params) if known else {})


@dataclass(frozen=True)
class AttackerRequest:
    """What the attacker is given besides the oracle (no victim, no exits, no thresholds).

    ``client_timed``: the attack's client times each query itself (``timing=live`` when
    isolated); ``network``: the ``timing.network`` round trip its client adds.
    """

    attack: str
    params: dict[str, Any]
    attacker_x: np.ndarray
    seed: int
    device: str
    budget: int
    output: OutputMode
    input_shape: tuple[int, ...]
    num_classes: int
    input_range: tuple[float, float]
    num_exits: int | None
    victim_family: str | None
    cost_fraction: tuple[float, ...] | None
    client_timed: bool = False
    network: str = "none"
    deployment: PublicDeployment | None = None

    @classmethod
    def for_cell(cls, cell: CellSpec, victim: TrainedVictim, pool: np.ndarray,
                 device: str) -> AttackerRequest:
        """The request of ``cell``'s attack against ``victim`` under the cell's threat model."""
        settings = cell.settings
        return cls.for_victim(victim, attack=cell.attack.name, params=cell.attack.params,
                              pool=pool, seed=cell.seed, device=device, budget=settings.budget,
                              output=settings.output,  # type: ignore[arg-type]
                              threat=settings.threat, client_timed=settings.timing == "live",
                              network=settings.network, deployment=public_deployment(cell))

    @classmethod
    def for_victim(cls, victim: TrainedVictim, *, attack: str, params: dict[str, Any],
                   pool: np.ndarray, seed: int, device: str, budget: int, output: OutputMode,
                   threat: ThreatModel, client_timed: bool = False,
                   network: str = "none",
                   deployment: PublicDeployment | None = None) -> AttackerRequest:
        """The request of an attack against ``victim`` under ``threat``."""
        data = victim.data
        return cls(attack=attack, params=params, attacker_x=pool, seed=seed, device=device,
                   budget=budget, output=output, input_shape=tuple(data.input_shape),
                   num_classes=data.num_classes,
                   input_range=tuple(data.input_range),  # type: ignore[arg-type]
                   client_timed=client_timed, network=network, deployment=deployment,
                   **threat_view(threat, victim.model.num_exits, victim.family,
                                 victim.model.cost_fraction))

    def context(self, registry: Registry, cache_dir: Path | None) -> AttackContext:
        """The attack's context: the task, the budget and what the threat model grants."""
        return AttackContext(
            seed=self.seed, device=self.device, budget=self.budget, output=self.output,
            input_shape=self.input_shape, num_classes=self.num_classes,
            input_range=self.input_range, num_exits=self.num_exits,
            victim_family=self.victim_family, cost_fraction=self.cost_fraction,
            cache_dir=cache_dir, toolbox=Toolbox(registry), deployment=self.deployment,
            own_servers=partial(build_own_server, registry))


def run_attack(request: AttackerRequest, oracle: OracleHandle, registry: Registry,
               cache_dir: Path | None) -> StolenModel:
    """Build the requested attack with its parameters and let it steal through ``oracle``."""
    attack = build_component(registry.get("attack", request.attack).cls, request.params)
    return attack.steal(oracle, request.attacker_x, request.context(registry, cache_dir))


def attack_failure(kind: str, text: str, harness_error: bool, label: str,
                   component: str) -> ComponentFailure:
    """The cell's failure for an attack that raised ``kind: text`` (a harness error, which
    already says what was wrong, is quoted without its type)."""
    reason = text if harness_error else f"{kind}: {text}"
    return ComponentFailure(f"{label} raised {reason}", component)
