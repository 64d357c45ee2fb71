"""The registry-backed factory a cell hands its components (through their contexts).

Attacks and victims reach other components only through this: policies, exit
estimators and network architectures are looked up by name in the registry, built
with their parameters and validated, so a plugin's policy, estimator or architecture
is usable everywhere a built-in one is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.components import build_component
from harness.errors import ConfigError
from harness.model import MultiExitNet
from harness.plugins.registry import Registry
from harness.protocol import Architecture, ExitEstimator, Normalization
from harness.strategy import ExitPolicy


@dataclass(frozen=True)
class NetworkRecipe:
    """Everything but the weights of a network the toolbox built (set as ``net.harness_recipe``).

    An attack's substitute travels as this recipe plus a state dict (:mod:`harness.cell.
    stolen`), and the evaluator rebuilds the network through the registry: no object
    crosses processes.
    """

    architecture: str
    params: dict[str, Any]
    input_shape: tuple[int, ...]
    num_classes: int
    num_exits: int
    normalization: Normalization | None = None

    def to_json(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "params": self.params,
                "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "num_exits": self.num_exits,
                "normalization": None if self.normalization is None
                else [list(self.normalization[0]), list(self.normalization[1])]}

    @classmethod
    def from_json(cls, raw: Any) -> NetworkRecipe:
        """The recipe :meth:`to_json` wrote; ``ValueError`` naming what is malformed."""
        try:
            norm = raw.get("normalization")
            return cls(architecture=str(raw["architecture"]), params=dict(raw["params"]),
                       input_shape=tuple(int(s) for s in raw["input_shape"]),
                       num_classes=int(raw["num_classes"]), num_exits=int(raw["num_exits"]),
                       normalization=None if norm is None else (tuple(map(float, norm[0])),
                                                                tuple(map(float, norm[1]))))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ValueError(f"malformed network recipe ({type(exc).__name__}: {exc})") from None


class Toolbox:
    """Builds registered components by name (read-only view of a :class:`Registry`)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def names(self, kind: str) -> list[str]:
        """Registered names of a kind (``exit_policy``, ``exit_estimator``, ``architecture``)."""
        return self._registry.names(kind)

    def policy(self, name: str) -> ExitPolicy:
        """A registered exit policy instance."""
        return self._registry.policy(name)

    def estimator(self, name: str, **params: Any) -> ExitEstimator:
        """A registered exit estimator built with ``params`` (validated)."""
        entry = self._registry.get("exit_estimator", name)
        estimator = build_component(entry.cls, params)
        estimator.validate(self._registry)
        return estimator  # type: ignore[return-value]

    def architecture(self, name: str, **params: Any) -> Architecture:
        """A registered architecture built with ``params`` (validated)."""
        entry = self._registry.get("architecture", name)
        arch = build_component(entry.cls, params)
        arch.validate(self._registry)
        return arch  # type: ignore[return-value]

    def new_network(self, architecture: str, input_shape: Sequence[int], num_classes: int,
                    num_exits: int, seed: int, normalization: Normalization | None = None,
                    **params: Any) -> MultiExitNet:
        """A fresh network of a registered architecture (deterministic for ``seed``)."""
        if not architecture:
            raise ConfigError("no architecture given and the victim's family is unknown; pass "
                              f"architecture= (registered: {', '.join(self.names('architecture'))})")
        arch = self.architecture(architecture, **params)
        net = arch.build(tuple(input_shape), int(num_classes), int(num_exits), seed=int(seed),
                         normalization=normalization)
        if not isinstance(net, MultiExitNet):
            entry = self._registry.get("architecture", architecture)
            raise ConfigError(f"architecture {architecture!r} (plugin {entry.plugin}, "
                              f"{entry.distribution}) built {type(net).__name__}, not a "
                              "harness.model.MultiExitNet")
        net.harness_recipe = NetworkRecipe(  # how the evaluator rebuilds it from weights
            architecture=architecture, params=dict(arch.get_params()),
            input_shape=tuple(int(s) for s in input_shape), num_classes=int(num_classes),
            num_exits=int(num_exits),
            normalization=None if normalization is None else
            (tuple(map(float, normalization[0])), tuple(map(float, normalization[1]))))
        return net

    def from_recipe(self, recipe: NetworkRecipe) -> MultiExitNet:
        """A fresh network built from a recipe (load the weights into it)."""
        return self.new_network(recipe.architecture, recipe.input_shape, recipe.num_classes,
                                recipe.num_exits, seed=0, normalization=recipe.normalization,
                                **recipe.params)
