"""A stolen model as data: network recipe + state dict + strategy + diagnostics.

An attack returns a :class:`~harness.protocol.StolenModel` holding live objects; the
evaluator never scores those. :func:`encode_stolen` turns it into a
:class:`StolenRecord` (JSON metadata and named numeric arrays) on the attack's side,
and :func:`rebuild_stolen` rebuilds the substitute through the registry from its recipe,
checks every shape and value, and only then hands it to scoring. One record, two
carriers: the isolation wire (:mod:`harness.isolation.wire`) and a folder
(:func:`save_stolen` / :func:`load_stolen`: ``stolen.json`` and ``model.pt``, the state
dict loadable with ``torch.load(weights_only=True)``; what ``harness attack`` writes).

A substitute not built through ``ctx.new_network`` has no recipe and is refused with a
message saying so, in every isolation mode.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.deployed import strategy_from_json as any_strategy_from_json
from harness.errors import HarnessError
from harness.io.atomic import atomic_write_bytes, write_json_atomic
from harness.io.jsonable import to_jsonable
from harness.model import MultiExitNet
from harness.plugins.registry import Registered, Registry
from harness.plugins.toolbox import NetworkRecipe, Toolbox
from harness.protocol import StolenModel
from harness.strategy import OutputStrategy

STATE_PREFIX = "state/"
ESTIMATES = "estimated_exits"
FORMAT = 2
"""Version of :func:`save_stolen`'s folder (2: the record's recipe with normalisation)."""
MAX_EXITS = 64


class StolenModelError(HarnessError):
    """The returned substitute cannot be encoded or rebuilt, or fails the evaluator's checks."""


@dataclass(frozen=True)
class StolenRecord:
    """The attack's result as data: ``meta`` (recipe, strategy, diagnostics) and arrays
    (``state/<name>`` per weight, ``estimated_exits`` when the attack gave them)."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def encode_stolen(stolen: Any) -> StolenRecord:
    """The attack's :class:`StolenModel` as a record (attack side); StolenModelError if it
    is not one, or its network was not built through the context."""
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
        arrays[ESTIMATES] = np.asarray(stolen.estimated_exits)
    try:
        diagnostics = to_jsonable(dict(stolen.diagnostics))
    except (TypeError, ValueError) as exc:
        raise StolenModelError(f"diagnostics are not JSON-serialisable ({exc}); return numbers, "
                               "strings, lists and dicts") from None
    return StolenRecord({"recipe": recipe.to_json(), "strategy": stolen.strategy.to_json(),
                         "diagnostics": diagnostics,
                         "has_estimates": stolen.estimated_exits is not None}, arrays)


def checked_recipe(record: StolenRecord, *, input_shape: tuple[int, ...],
                   num_classes: int) -> NetworkRecipe:
    """The record's recipe, checked against the task without running any component code."""
    try:
        recipe = NetworkRecipe.from_json(record.meta.get("recipe"))
    except ValueError as exc:
        raise StolenModelError(f"the substitute's recipe is malformed: {exc}") from None
    if recipe.input_shape != tuple(input_shape) or recipe.num_classes != num_classes:
        raise StolenModelError(f"the substitute takes inputs {recipe.input_shape} and "
                               f"{recipe.num_classes} classes; the task has {tuple(input_shape)} "
                               f"and {num_classes}")
    if not 2 <= recipe.num_exits <= MAX_EXITS:
        raise StolenModelError(f"the substitute has {recipe.num_exits} exits; allowed "
                               f"2..{MAX_EXITS}")
    if not isinstance(record.meta.get("diagnostics"), dict):
        raise StolenModelError("diagnostics must be a JSON object")
    return recipe


def untrusted_code(record: StolenRecord, registry: Registry) -> list[Registered]:
    """The untrusted plugins' architecture and exit policy the substitute is built from:
    the evaluator must not run them (a sandboxed scorer does, :mod:`harness.isolation.scorer`)."""
    recipe = record.meta.get("recipe")
    strategy = record.meta.get("strategy")
    named = [("architecture", recipe.get("architecture") if isinstance(recipe, dict) else None),
             ("exit_policy", strategy.get("policy") if isinstance(strategy, dict) else None)]
    return [registry.get(kind, name) for kind, name in named
            if isinstance(name, str) and name in registry.names(kind)
            and not registry.get(kind, name).trusted]


def rebuild_stolen(record: StolenRecord, registry: Registry, *, input_shape: tuple[int, ...],
                   num_classes: int) -> StolenModel:
    """Rebuild and check the substitute; raises :class:`StolenModelError`. The evaluator
    calls it only when :func:`untrusted_code` is empty; the sandboxed scorer, whose
    registry imported the untrusted plugins, for the others."""
    recipe = checked_recipe(record, input_shape=input_shape, num_classes=num_classes)
    try:
        model = Toolbox(registry).from_recipe(recipe)
    except Exception as exc:
        raise StolenModelError(f"cannot rebuild the substitute from its recipe: {exc}") from None
    model.load_state_dict(_checked_state(record.arrays, model.state_dict()), strict=True)
    model.eval()
    strategy = strategy_from_json(record.meta.get("strategy"), registry, model.num_exits,
                                  num_classes)
    return StolenModel(model, strategy, estimated_exits(record), record.meta["diagnostics"])


def estimated_exits(record: StolenRecord) -> np.ndarray | None:
    """The exits the attack estimated for its queries, when it gave them."""
    return record.arrays.get(ESTIMATES) if record.meta.get("has_estimates") else None


def _checked_state(arrays: dict[str, np.ndarray],
                   expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The record's weights as tensors, each checked against the rebuilt architecture."""
    state = {k[len(STATE_PREFIX):]: v for k, v in arrays.items() if k.startswith(STATE_PREFIX)}
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        raise StolenModelError(f"the substitute's weights do not match its architecture "
                               f"(missing {missing[:5]}, unexpected {extra[:5]})")
    tensors = {}
    for name, ref in expected.items():
        array = np.asarray(state[name])
        if tuple(array.shape) != tuple(ref.shape) or array.dtype.kind not in "fiub":
            raise StolenModelError(f"weight {name!r} has shape {array.shape} and dtype "
                                   f"{array.dtype}; expected {tuple(ref.shape)}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise StolenModelError(f"weight {name!r} has NaN or infinite values")
        tensors[name] = torch.as_tensor(array).to(ref.dtype)
    return tensors


def strategy_from_json(raw: Any, registry: Registry, num_exits: int,
                       num_classes: int) -> OutputStrategy:
    """An :class:`OutputStrategy` from its JSON, checked against the network: a plain one,
    or one of :mod:`harness.deployed` (``kind``: per-class thresholds, CGR)."""
    try:
        strategy = any_strategy_from_json(raw, registry.policy)
        strategy.validate(num_exits, num_classes, owner="the stolen strategy")
    except HarnessError as exc:
        raise StolenModelError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise StolenModelError(f"the stolen strategy is malformed ({exc})") from None
    return strategy


def save_stolen(folder: Path, record: StolenRecord, extra: dict[str, Any]) -> Path:
    """Write ``model.pt`` (the state dict) and ``stolen.json`` (the record's metadata, the
    estimated exits and ``extra``) into ``folder``, each atomically; returns the JSON's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k[len(STATE_PREFIX):]: torch.as_tensor(v) for k, v in record.arrays.items()
             if k.startswith(STATE_PREFIX)}
    buffer = _torch_bytes(state)
    atomic_write_bytes(folder / "model.pt", buffer)
    estimates = record.arrays.get(ESTIMATES)
    doc = {**to_jsonable(extra), **record.meta, "format": FORMAT,
           ESTIMATES: None if estimates is None else [int(e) for e in estimates]}
    return write_json_atomic(folder / "stolen.json", doc, indent=1)


def _torch_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def load_stolen(folder: Path, registry: Registry) -> tuple[StolenModel, dict[str, Any]]:
    """Rebuild a saved substitute through the registry, with every check of
    :func:`rebuild_stolen`: (the stolen model, the JSON document)."""
    folder = Path(folder)
    doc = json.loads((folder / "stolen.json").read_text())
    if doc.get("format") != FORMAT:
        raise StolenModelError(f"{folder}: stolen-model format {doc.get('format')!r} is not "
                               f"{FORMAT}; run the attack again with this harness")
    state = torch.load(folder / "model.pt", weights_only=True)
    arrays = {STATE_PREFIX + k: v.numpy() for k, v in state.items()}
    if doc.get(ESTIMATES) is not None:
        arrays[ESTIMATES] = np.asarray(doc[ESTIMATES], dtype=np.int64)
    recipe = doc.get("recipe") or {}
    record = StolenRecord({k: doc.get(k) for k in ("recipe", "strategy", "diagnostics",
                                                   "has_estimates")}, arrays)
    stolen = rebuild_stolen(record, registry, input_shape=tuple(recipe.get("input_shape", ())),
                            num_classes=int(recipe.get("num_classes", 0)))
    return stolen, doc
