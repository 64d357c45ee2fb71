"""Conformance kit for plugin authors, in the spirit of scikit-learn's ``check_estimator``.

``check_defense(MyDefense)``, ``check_attack(MyAttack, params={...})`` and
``check_victim(MyVictim, params={...})`` raise :class:`ConformanceError` naming the
component, the failed check and how to fix it. ``conformance_cases(kind)`` yields
``pytest.param`` objects for every registered component of a kind, for
``@pytest.mark.parametrize``. The kit builds a tiny multi-exit victim of its own, so
attacks are checked without training anything large.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.components import NAME_PATTERN, Component
from harness.errors import ConfigError, HarnessError
from harness.model import MultiExitNet, exit_probabilities
from harness.plugins.manager import make_plugin_manager
from harness.plugins.registry import Registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import (
    Attack,
    AttackContext,
    Defense,
    ServedModel,
    ServeTrace,
    StolenModel,
    TrainedVictim,
    Victim,
    VictimContext,
)
from harness.serving.endpoint import Endpoint
from harness.serving.oracle import Oracle
from harness.strategy import OutputStrategy
from harness.timing.models import AnalyticTiming

INPUT_SHAPE = (1, 8, 8)
NUM_CLASSES = 4


class ConformanceError(AssertionError):
    """A component broke the plugin contract; the message says which check and the fix."""


def _fail(comp: Any, check: str, problem: str, fix: str) -> ConformanceError:
    name = getattr(comp, "name", None) or getattr(comp, "__name__", repr(comp))
    return ConformanceError(f"{getattr(comp, 'kind', 'component')} {name!r} failed check "
                            f"{check!r}: {problem}. Fix: {fix}")


def _registry() -> Registry:
    return Registry.from_manager(make_plugin_manager())


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
    _check_constraints(cls, obj, registry or _registry())
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


def _tiny_net(seed: int) -> MultiExitNet:
    gen = torch.Generator().manual_seed(seed)
    blocks = [nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
              nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU()),
              nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())]
    heads = [nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(c * 4, NUM_CLASSES))
             for c in (4, 8, 8)]
    net = MultiExitNet(blocks, heads, INPUT_SHAPE, NUM_CLASSES)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return net.eval()


class _BatchedServed(ServedModel):
    """Batched-only serving of the kit's tiny net (analytic timing needs nothing more)."""

    def __init__(self, net: MultiExitNet) -> None:
        self.net = net
        self.num_exits = net.num_exits
        self.cost_fraction = net.cost_fraction

    def exit_probs(self, x: np.ndarray) -> list[np.ndarray]:
        return exit_probabilities(self.net, x)

    def serve(self, x, strategy=None, exits=None, repeats=1) -> ServeTrace:
        raise NotImplementedError("the conformance kit uses analytic timing only")


def tiny_setup(seed: int = 0, pool: int = 96) -> tuple[_BatchedServed, OutputStrategy, np.ndarray]:
    """A tiny 3-exit victim, a strategy spreading its exits, and an attacker pool."""
    policy = Registry.from_manager(make_plugin_manager(load_entrypoints=False)).policy("max_prob")
    served = _BatchedServed(_tiny_net(seed))
    x = np.random.default_rng(seed).random((pool, *INPUT_SHAPE)).astype(np.float32)
    probs = served.exit_probs(x)
    thresholds = tuple(float(np.quantile(policy.score(p), 0.6)) for p in probs[:-1])
    return served, OutputStrategy(policy, thresholds), x


def _oracle(served, strategy, defense: Defense, budget: int, output: str, truth: bool) -> Oracle:
    endpoint = Endpoint(served, strategy, defense, AnalyticTiming(), np.random.default_rng(1),
                        np.random.default_rng(2), num_classes=NUM_CLASSES,
                        defense_label="defense under test")
    return Oracle(endpoint, budget, output, INPUT_SHAPE, (0.0, 1.0), allow_truth=truth)


def check_defense(cls: type[Defense], params: dict[str, Any] | None = None) -> None:
    """Stages keep shapes and ranges, latencies never shrink, same seed -> same responses."""
    check_component(cls, params)
    served, strategy, x = tiny_setup()

    def respond(seed: int):
        defense = cls(**(params or {}))
        defense.reset()
        endpoint = Endpoint(served, strategy, defense, AnalyticTiming(),
                            np.random.default_rng(seed), np.random.default_rng(seed + 1),
                            num_classes=NUM_CLASSES, defense_label=f"defense {cls.name!r}")
        try:
            return [endpoint.respond(x[i:i + 32]) for i in range(0, len(x), 32)]
        except HarnessError as exc:
            raise _fail(cls, "stages", str(exc), "return arrays of the documented shapes") from None

    first, again = respond(0), respond(0)
    for a, b in zip(first, again, strict=True):
        same = (np.array_equal(a.exits, b.exits) and np.array_equal(a.admitted, b.admitted)
                and np.allclose(a.probs, b.probs, equal_nan=True)
                and np.allclose(a.latency_s, b.latency_s, equal_nan=True))
        if not same:
            raise _fail(cls, "seeded_determinism", "the same seed gave different responses",
                        "draw randomness only from the rng argument of each stage")
        ok = a.admitted
        if ok.any() and not np.allclose(a.probs[ok].sum(1), 1.0, atol=1e-4):
            raise _fail(cls, "outputs_are_probabilities", "perturbed outputs do not sum to 1",
                        "renormalise perturbed probability vectors")


def check_attack(cls: type[Attack], params: dict[str, Any] | None = None, budget: int = 48,
                 output: str = "probs") -> StolenModel:
    """Steals from the kit's tiny victim within ``budget``; returns the stolen model."""
    registry = _registry()
    attack = check_component(cls, params, registry)
    served, strategy, pool = tiny_setup()
    oracle = _oracle(served, strategy, Defense(), budget, output, truth=cls.reference)
    with tempfile.TemporaryDirectory() as tmp:
        ctx = AttackContext(seed=0, device="cpu", budget=budget, output=output,
                            input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES,
                            input_range=(0.0, 1.0), num_exits=3, victim_family="small_cnn",
                            cache_dir=Path(tmp), toolbox=Toolbox(registry))
        try:
            stolen = attack.steal(oracle, pool.copy(), ctx)
        except HarnessError as exc:
            raise _fail(cls, "steal", f"raised {type(exc).__name__}: {exc}",
                        "stay within ctx.budget (oracle.budget_left) and send valid queries") from None
    if not isinstance(stolen, StolenModel) or not isinstance(stolen.model, MultiExitNet):
        raise _fail(cls, "returns_stolen_model", f"steal() returned {type(stolen).__name__}",
                    "return StolenModel(model=<MultiExitNet>, strategy=<OutputStrategy>)")
    try:
        stolen.strategy.validate(stolen.model.num_exits, NUM_CLASSES, owner=cls.name)
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
                 cache_dir: Path | None = None) -> TrainedVictim:
    """Prepares on its registered dataset; structure, strategy and cache reuse are sound."""
    registry = _registry()
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


def conformance_cases(kind: str) -> list[Any]:
    """``pytest.param(cls, id=name)`` for each registered component of ``kind``."""
    import pytest

    return [pytest.param(e.cls, id=e.name) for e in _registry().entries(kind)]
