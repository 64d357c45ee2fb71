"""A stolen model as data: state dict + architecture name/params + strategy JSON.

An attack builds its substitute through ``ctx.new_network``; :class:`RecordingToolbox`
remembers how each network was built, so the result can be written as plain data
(``model.pt``: tensors only, loadable with ``torch.load(weights_only=True)``;
``stolen.json``: architecture, its parameters, shapes, strategy, diagnostics) and
rebuilt anywhere through the registry by :func:`load_stolen`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from harness.errors import ComponentFailure, ConfigError
from harness.model import MultiExitNet
from harness.plugins.registry import Registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import Normalization, StolenModel
from harness.strategy import OutputStrategy

FORMAT = 1


@dataclass(frozen=True)
class NetworkRecipe:
    """How a network was built through the registry (enough to rebuild it)."""

    architecture: str
    params: dict[str, Any]
    input_shape: tuple[int, ...]
    num_classes: int
    num_exits: int
    seed: int


class RecordingToolbox(Toolbox):
    """A :class:`Toolbox` that remembers the recipe of every network it builds."""

    def __init__(self, registry: Registry) -> None:
        super().__init__(registry)
        self._recipes: dict[int, tuple[MultiExitNet, NetworkRecipe]] = {}

    def new_network(self, architecture: str, input_shape: Sequence[int], num_classes: int,
                    num_exits: int, seed: int, normalization: Normalization | None = None,
                    **params: Any) -> MultiExitNet:
        net = super().new_network(architecture, input_shape, num_classes, num_exits, seed,
                                  normalization=normalization, **params)
        if normalization is None:  # attacks' networks; a normalised one is not rebuildable here
            recipe = NetworkRecipe(architecture, dict(params), tuple(int(s) for s in input_shape),
                                   int(num_classes), int(num_exits), int(seed))
            self._recipes[id(net)] = (net, recipe)
        return net

    def recipe_of(self, net: MultiExitNet) -> NetworkRecipe:
        """The recipe of a network this toolbox built; a foreign network is refused."""
        found = self._recipes.get(id(net))
        if found is None or found[0] is not net:
            raise ComponentFailure("the substitute was not built with ctx.new_network, so it "
                                   "cannot be saved as data (architecture + state dict); build "
                                   "it through the context")
        return found[1]


def save_stolen(folder: Path, stolen: StolenModel, recipe: NetworkRecipe,
                extra: dict[str, Any]) -> Path:
    """Write ``model.pt`` and ``stolen.json`` into ``folder``; returns the JSON's path."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in stolen.model.state_dict().items()}
    torch.save(state, folder / "model.pt")
    doc = {"format": FORMAT, "network": asdict(recipe), "strategy": stolen.strategy.to_json(),
           "estimated_exits": (None if stolen.estimated_exits is None
                               else [int(e) for e in stolen.estimated_exits]),
           **extra}
    path = folder / "stolen.json"
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, allow_nan=False))
    return path


def load_stolen(folder: Path, registry: Registry) -> tuple[MultiExitNet, OutputStrategy, dict]:
    """Rebuild a saved substitute through the registry: (network, strategy, the JSON)."""
    doc = json.loads((folder / "stolen.json").read_text())
    if doc.get("format") != FORMAT:
        raise ConfigError(f"{folder}: stolen-model format {doc.get('format')} is not {FORMAT}")
    r = NetworkRecipe(**{**doc["network"], "input_shape": tuple(doc["network"]["input_shape"])})
    net = Toolbox(registry).new_network(r.architecture, r.input_shape, r.num_classes,
                                        r.num_exits, r.seed, **r.params)
    net.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    strategy = OutputStrategy(registry.policy(doc["strategy"]["policy"]),
                              tuple(doc["strategy"]["thresholds"]))
    strategy.validate(net.num_exits, net.num_classes, owner=str(folder))
    return net.eval(), strategy, doc
