"""A stolen model as data: recipe + state dict + strategy, rebuilt by the evaluator.

The client process turns the attack's :class:`~harness.protocol.StolenModel` into a
:class:`~harness.isolation.wire.Message` (:func:`encode_stolen`); the evaluator rebuilds
the substitute through the registry from its recipe, checks every shape and value
(:func:`rebuild_stolen`) and only then scores it. A substitute not built through
``ctx.new_network`` has no recipe and is refused with a message saying so.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from harness.errors import HarnessError
from harness.isolation.wire import Message
from harness.model import MultiExitNet
from harness.plugins.registry import Registry
from harness.plugins.toolbox import NetworkRecipe, Toolbox
from harness.protocol import StolenModel
from harness.strategy import OutputStrategy

STATE_PREFIX = "state/"


class StolenModelError(HarnessError):
    """The returned substitute cannot be rebuilt or fails the evaluator's checks."""


def encode_stolen(stolen: StolenModel) -> Message:
    """The attack's result as a wire message (client side)."""
    if not isinstance(stolen, StolenModel):
        raise StolenModelError(f"steal() returned {type(stolen).__name__}, expected "
                               "harness.protocol.StolenModel")
    if not isinstance(stolen.model, MultiExitNet):
        raise StolenModelError("the substitute must be a harness.model.MultiExitNet")
    recipe = getattr(stolen.model, "harness_recipe", None)
    if not isinstance(recipe, NetworkRecipe):
        raise StolenModelError(
            "the substitute was not built through ctx.new_network(...), so the evaluator "
            "cannot rebuild it from its weights; build substitutes with ctx.new_network (any "
            "registered architecture, see `harness list architectures`)")
    if not isinstance(stolen.strategy, OutputStrategy):
        raise StolenModelError("the strategy must be a harness.strategy.OutputStrategy")
    arrays = {STATE_PREFIX + k: v.detach().cpu().numpy()
              for k, v in stolen.model.state_dict().items()}
    if stolen.estimated_exits is not None:
        arrays["estimated_exits"] = np.asarray(stolen.estimated_exits)
    try:
        diagnostics = json.loads(json.dumps(stolen.diagnostics, allow_nan=False, default=_plain))
    except (TypeError, ValueError) as exc:
        raise StolenModelError(f"diagnostics are not JSON-serialisable ({exc}); return numbers, "
                               "strings, lists and dicts") from None
    return Message("stolen", {"recipe": recipe.to_json(), "strategy": stolen.strategy.to_json(),
                              "diagnostics": diagnostics,
                              "has_estimates": stolen.estimated_exits is not None}, arrays)


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def recipe_from_json(meta: dict[str, Any]) -> NetworkRecipe:
    """The :class:`NetworkRecipe` under ``meta['recipe']`` (StolenModelError if malformed)."""
    try:
        raw = meta["recipe"]
        norm = raw.get("normalization")
        return NetworkRecipe(
            architecture=str(raw["architecture"]), params=dict(raw["params"]),
            input_shape=tuple(int(s) for s in raw["input_shape"]),
            num_classes=int(raw["num_classes"]), num_exits=int(raw["num_exits"]),
            normalization=None if norm is None else (tuple(map(float, norm[0])),
                                                     tuple(map(float, norm[1]))))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise StolenModelError(f"the substitute's recipe is malformed ({exc})") from None


def rebuild_stolen(message: Message, registry: Registry, *, input_shape: tuple[int, ...],
                   num_classes: int) -> StolenModel:
    """Rebuild and check the substitute (evaluator side); raises :class:`StolenModelError`."""
    recipe = recipe_from_json(message.meta)
    if recipe.input_shape != tuple(input_shape) or recipe.num_classes != num_classes:
        raise StolenModelError(f"the substitute takes inputs {recipe.input_shape} and "
                               f"{recipe.num_classes} classes; the task has {tuple(input_shape)} "
                               f"and {num_classes}")
    if not 2 <= recipe.num_exits <= 64:
        raise StolenModelError(f"the substitute has {recipe.num_exits} exits; allowed 2..64")
    try:
        model = Toolbox(registry).from_recipe(recipe)
    except Exception as exc:
        raise StolenModelError(f"cannot rebuild the substitute from its recipe: {exc}") from None
    state = {k[len(STATE_PREFIX):]: v for k, v in message.arrays.items()
             if k.startswith(STATE_PREFIX)}
    expected = model.state_dict()
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise StolenModelError(f"the substitute's weights do not match its architecture "
                               f"(missing {missing[:5]}, unexpected {extra[:5]})")
    tensors = {}
    for name, ref in expected.items():
        array = state[name]
        if tuple(array.shape) != tuple(ref.shape) or array.dtype.kind not in "fiub":
            raise StolenModelError(f"weight {name!r} has shape {array.shape} and dtype "
                                   f"{array.dtype}; expected {tuple(ref.shape)}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise StolenModelError(f"weight {name!r} has NaN or infinite values")
        tensors[name] = torch.as_tensor(array).to(ref.dtype)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    strategy = strategy_from_json(message.meta.get("strategy"), registry, model.num_exits,
                                  num_classes)
    estimates = message.arrays.get("estimated_exits") if message.meta.get("has_estimates") else None
    diagnostics = message.meta.get("diagnostics")
    if not isinstance(diagnostics, dict):
        raise StolenModelError("diagnostics must be a JSON object")
    return StolenModel(model, strategy, estimates, diagnostics)


def strategy_from_json(raw: Any, registry: Registry, num_exits: int,
                       num_classes: int) -> OutputStrategy:
    """An :class:`OutputStrategy` from its JSON, checked against the network."""
    try:
        policy = registry.policy(str(raw["policy"]))
        thresholds = tuple(float(t) for t in raw["thresholds"])
        strategy = OutputStrategy(policy, thresholds)
        strategy.validate(num_exits, num_classes, owner="the stolen strategy")
    except HarnessError as exc:
        raise StolenModelError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise StolenModelError(f"the stolen strategy is malformed ({exc})") from None
    return strategy
