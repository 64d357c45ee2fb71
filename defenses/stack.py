"""A defense built of other registered defenses, applied in the listed order.

``defenses=pad_bucket+rounding`` on the command line (or ``defense.stack.members=[...]``)
runs one ``stack`` whose members are ``pad_bucket`` then ``rounding``, each with its own
parameters (``defense.pad_bucket.width=...`` applies to it inside a stack too). Within
each stage the members run in order, each seeing what the one before returned:

* ``admit``: a member sees only the queries the earlier members admitted (a monitor
  never records a query another member already refused); the stack admits what all do.
* ``choose_exits``, ``perturb_outputs``, ``shape_latency``: the batch's ``exits``,
  ``outputs`` or ``latency_s`` is the previous member's answer. The first member that
  chooses exits sees the policy's exits when it asks for them (``needs_policy_exits``);
  every member may ask the server for any exit's outputs.

Every member draws from the same ``batch.rng`` in member order, so a stack of one member
answers exactly like that member. ``report()`` joins the members' counters under
``"<position>:<name>.<counter>"``. Results and leaderboards name a stack by its members,
``pad_bucket+rounding``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from harness.components import build_component, check_nested
from harness.errors import ConfigError
from harness.stages import (
    Defense,
    ServerInfo,
    StageBatch,
    bind_defense,
    declared_strategy,
    defense_report,
    read_only,
)
from harness.strategy import OutputStrategy

if TYPE_CHECKING:
    from harness.plugins.registry import Registry


def member_spec(member: object) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``{"name": ..., "params": {...}}`` -> (name, params)."""
    if isinstance(member, str):
        return member, {}
    if isinstance(member, dict) and isinstance(member.get("name"), str) \
            and set(member) <= {"name", "params"} and isinstance(member.get("params", {}), dict):
        return member["name"], dict(member.get("params", {}))
    raise ConfigError(f"defense 'stack': member {member!r} must be a defense name or "
                      '{"name": NAME, "params": {...}}')


class DefenseStack(Defense):
    """Several registered defenses in one pipeline, applied in order within each stage."""

    name = "stack"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {"members": [list, None]}

    def __init__(self, members: list | None = None) -> None:
        self.members = members  # None: the no-op stack of ``none`` alone

    @classmethod
    def label_for(cls, params: dict[str, Any]) -> str:
        try:
            members = params.get("members")
            return "+".join(member_spec(m)[0] for m in (["none"] if members is None else members))
        except ConfigError:
            return cls.name

    def _specs(self) -> list[tuple[str, dict[str, Any]]]:
        return [member_spec(m) for m in (["none"] if self.members is None else self.members)]

    def validate(self, registry: Registry | None = None) -> None:
        """At least one member; with a registry, every member and its parameters."""
        super().validate(registry)
        specs = self._specs()
        if not specs:
            raise ConfigError("defense 'stack': members is empty; give at least one defense, "
                              "e.g. defenses=pad_bucket+rounding")
        if registry is None:
            return
        for name, params in specs:
            registry.get("defense", name)  # unknown names list the registered defenses
            check_nested("defense 'stack'", registry, "defense", name, params, f"member {name}")

    def bind(self, registry: Registry) -> None:
        self._members = []
        for name, params in self._specs():
            member = build_component(registry.get("defense", name).cls, params)
            bind_defense(member, registry)
            self._members.append(member)

    def _built(self) -> list[Defense]:
        members = getattr(self, "_members", None)
        if members is None:
            raise ConfigError("defense 'stack' was used before bind(registry); the server binds "
                              "it (harness.testing.check_defense does too)")
        return members

    def reset(self) -> None:
        for member in self._built():
            member.reset()

    def report(self) -> dict[str, float]:
        return {f"{i}:{m.name}.{k}": v for i, m in enumerate(self._built())
                for k, v in defense_report(m).items()}

    def admit(self, batch: StageBatch) -> np.ndarray:
        admitted = np.ones(len(batch), dtype=bool)
        for member in self._built():
            idx = np.flatnonzero(admitted)
            if not len(idx):
                break
            sub = replace(batch, inputs=read_only(batch.inputs[idx]))
            mask = np.asarray(member.admit(sub), dtype=bool)
            if mask.shape != (len(idx),):
                raise ValueError(f"member {member.name!r} admit returned shape {mask.shape}, "
                                 f"expected ({len(idx)},)")
            admitted[idx[~mask]] = False
        return admitted

    def _chain(self, stage: str, field: str, batch: StageBatch) -> np.ndarray:
        value = getattr(batch, field)
        for member in self._built():
            value = np.asarray(getattr(member, stage)(replace(batch, **{field: read_only(value)})))
        return value

    def choose_exits(self, batch: StageBatch) -> np.ndarray:
        return self._chain("choose_exits", "exits", batch)

    def wants_policy_exits(self) -> bool:
        """What the first member that chooses exits wants (it starts from the policy's)."""
        for member in self._built():
            if "choose_exits" in member.stages():
                return member.wants_policy_exits()
        return True

    def deployed_strategy(self, server: ServerInfo) -> OutputStrategy | None:
        """The one member's deployed strategy (two members that each deploy one are refused)."""
        declared = [(m.name, s) for m in self._built()
                    if (s := declared_strategy(m, server)) is not None]
        if len(declared) > 1:
            raise ConfigError("defense 'stack': members " + " and ".join(
                repr(name) for name, _ in declared) + " each deploy an exit strategy of their "
                "own; keep one of them")
        return declared[0][1] if declared else None

    def perturb_outputs(self, batch: StageBatch) -> np.ndarray:
        return self._chain("perturb_outputs", "outputs", batch)

    def shape_latency(self, batch: StageBatch) -> np.ndarray:
        return self._chain("shape_latency", "latency_s", batch)
