"""Conformance checks for plugin authors, in the spirit of scikit-learn's ``check_estimator``.

``check_component``, ``check_attack(MyAttack, params={...})`` and
``check_victim(MyVictim, params={...})`` (and ``check_defense``, in
:mod:`harness.testing.defense_checks`) raise :class:`ConformanceError` naming the
component, the failed check and how to fix it (:mod:`harness.testing.parametrize` turns
them into pytest cases). Attacks
are checked against the kit's tiny victim (:mod:`harness.testing.fixtures`), so nothing
large is trained.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from harness.components import NAME_PATTERN, Component
from harness.errors import ConfigError, HarnessError
from harness.model import MultiExitNet
from harness.plugins.registry import Registry, load_registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import Attack, StolenModel, TrainedVictim, Victim, VictimContext
from harness.testing.fixtures import tiny_oracle, tiny_victim


class ConformanceError(AssertionError):
    """A component broke the plugin contract; the message says which check and the fix."""


def _fail(comp: Any, check: str, problem: str, fix: str) -> ConformanceError:
    name = getattr(comp, "name", None) or getattr(comp, "__name__", repr(comp))
    return ConformanceError(f"{getattr(comp, 'kind', 'component')} {name!r} failed check "
                            f"{check!r}: {problem}. Fix: {fix}")


def check_component(cls: type[Component], params: dict[str, Any] | None = None,
                    registry: Registry | None = None) -> Component:
    """Name, sklearn-style ``__init__``, ``get_params`` round trip, JSON params, constraints.

    Every ``__init__`` parameter must have a declared constraint, the defaults (and
    ``params``) must pass :meth:`Component.validate`, and a value outside every
    constraint must be refused.
    """
    if not NAME_PATTERN.match(getattr(cls, "name", "") or ""):
        raise _fail(cls, "name", f"name {getattr(cls, 'name', None)!r} is not snake_case",
                    "set a class attribute name = 'my_component'")
    try:
        obj = cls(**(params or {}))
    except TypeError as exc:
        raise _fail(cls, "init_defaults", f"cannot be built from keyword params ({exc})",
                    "give every __init__ parameter a default") from None
    try:
        got = obj.get_params()
    except HarnessError as exc:
        raise _fail(cls, "get_params", str(exc), "store each parameter as self.<name>") from None
    extra = sorted(set(vars(obj)) - set(got))
    if extra:
        raise _fail(cls, "init_only_stores_params", f"__init__ set attributes {extra}",
                    "compute derived state in the method that needs it, not in __init__")
    try:
        json.dumps(got, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _fail(cls, "json_params", f"parameters are not JSON-serialisable ({exc})",
                    "use numbers, strings, booleans, lists, dicts or None") from None
    clone = cls(**got)
    if clone.get_params() != got:
        raise _fail(cls, "get_params_round_trip", "cls(**obj.get_params()) has other params",
                    "store parameters unchanged in __init__")
    _check_constraints(cls, obj, registry or load_registry(untrusted="import"))
    return obj


def _check_constraints(cls: type[Component], obj: Component, registry: Registry) -> None:
    constraints = getattr(cls, "_parameter_constraints", {})
    missing = sorted(set(cls.param_names()) - set(constraints))
    if missing:
        raise _fail(cls, "parameter_constraints", f"no constraint declared for {missing}",
                    "declare _parameter_constraints = {name: [Interval(...), ...]} for every "
                    "__init__ parameter (see harness.params)")
    unknown = sorted(set(constraints) - set(cls.param_names()))
    if unknown:
        raise _fail(cls, "parameter_constraints", f"constraints for unknown parameters {unknown}",
                    "constrain only __init__ parameters")
    try:
        obj.validate(registry)
    except ConfigError as exc:
        raise _fail(cls, "validate", f"the given parameters do not validate ({exc})",
                    "make the defaults satisfy the declared constraints") from None
    for name in cls.param_names():
        try:
            cls(**{**obj.get_params(), name: _NOT_A_VALUE}).validate(registry)
        except ConfigError:
            continue
        except Exception as exc:
            raise _fail(cls, "validate_refuses", f"validate() raised {type(exc).__name__} instead "
                        f"of ConfigError for a bad {name!r}", "let validate() (constraints) "
                        "reject bad values before any code uses them") from None
        raise _fail(cls, "validate_refuses", f"validate() accepted {name}={_NOT_A_VALUE!r}",
                    "call super().validate(registry) when overriding validate")


class _Invalid:
    def __repr__(self) -> str:
        return "<a value no constraint accepts>"


_NOT_A_VALUE = _Invalid()


def check_attack(cls: type[Attack], params: dict[str, Any] | None = None,
                 registry: Registry | None = None, budget: int = 48,
                 output: str = "probs") -> StolenModel:
    """Steals from the kit's tiny victim within ``budget``; returns the stolen model."""
    registry = registry or load_registry(untrusted="import")
    attack = check_component(cls, params, registry)
    victim = tiny_victim(registry=registry)
    oracle, ctx = tiny_oracle(victim, budget, output=output, truth=cls.reference,
                              registry=registry)
    pool = victim.data.attacker.x
    with tempfile.TemporaryDirectory() as tmp:
        ctx = dataclasses.replace(ctx, cache_dir=Path(tmp))
        try:
            stolen = attack.steal(oracle, pool.copy(), ctx)
        except HarnessError as exc:
            raise _fail(cls, "steal", f"raised {type(exc).__name__}: {exc}",
                        "stay within ctx.budget (oracle.budget_left) and send valid queries") from None
    if not isinstance(stolen, StolenModel) or not isinstance(stolen.model, MultiExitNet):
        raise _fail(cls, "returns_stolen_model", f"steal() returned {type(stolen).__name__}",
                    "return StolenModel(model=<MultiExitNet>, strategy=<OutputStrategy>)")
    try:
        stolen.strategy.validate(stolen.model.num_exits, victim.data.num_classes, owner=cls.name)
    except HarnessError as exc:
        raise _fail(cls, "strategy_fits_model", str(exc), "one threshold per non-final exit") from None
    if oracle.queries_used > budget:
        raise _fail(cls, "budget", f"used {oracle.queries_used} > {budget}", "respect ctx.budget")
    est = stolen.estimated_exits
    if est is not None and np.shape(est) != (oracle.queries_used,):
        raise _fail(cls, "estimated_exits", f"{np.shape(est)} for {oracle.queries_used} queries",
                    "give one estimated exit per query, in query order")
    return stolen


def check_victim(cls: type[Victim], params: dict[str, Any] | None = None,
                 registry: Registry | None = None, cache_dir: Path | None = None) -> TrainedVictim:
    """Prepares on its registered dataset; structure, strategy and cache reuse are sound."""
    registry = registry or load_registry(untrusted="import")
    victim = check_component(cls, params, registry)
    data = registry.get("dataset", cls.dataset).cls().load(None)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = VictimContext(Path(cache_dir or tmp), "cpu", Toolbox(registry))
        trained = victim.prepare(data, ctx)
        again = cls(**(params or {})).prepare(data, ctx)
    if not isinstance(trained, TrainedVictim) or not isinstance(trained.model, MultiExitNet):
        raise _fail(cls, "returns_trained_victim", f"prepare() returned {type(trained).__name__}",
                    "return TrainedVictim(name, MultiExitNet, OutputStrategy, data, family, hash)")
    trained.strategy.validate(trained.model.num_exits, data.num_classes, owner=cls.name)
    cost = trained.model.exit_cost
    if any(b <= a for a, b in itertools.pairwise(cost)):
        raise _fail(cls, "exit_cost_increasing", f"exit costs {cost}",
                    "each exit must need strictly more computation than the one before")
    if again.weights_hash != trained.weights_hash:
        raise _fail(cls, "deterministic_cache", "preparing twice gave different weights",
                    "seed training and cache weights by config hash")
    return trained
