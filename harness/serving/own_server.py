"""The attacker's own server: its network behind the public deployment (docs/design.md
section 4, "Kerckhoffs's principle").

A defense's code and parameters and the timing deployment are public: a cell records
them. Under ``threat.defense=known`` (the default) an attack may therefore run a server of
its own, ``ctx.local_server(network, strategy)``, that serves *its* network through the
same serving path as the victim's (:class:`~harness.serving.endpoint.Endpoint`: the
backend, the defense's stages, the timing model), with the same defense built fresh from
the registry under a key of its own. It never holds the victim, its weights, its server
or its key: :class:`PublicDeployment` is all it is built from, and the attack gets it
through its context only.

An own server answers with everything its owner may know: outputs, latencies, the exit
that answered and the exit the strategy intended (the owner set the strategy).
:func:`forced_exit` gives a strategy that sends every query to one exit, so an attacker
can profile each exit's latency under the defense.

``threat.defense=hidden``: the deployment carries no defense and the own server serves
undefended (the attacker knows how the victim is served, not how it is defended).
``timing=replay`` draws from a profile only the evaluator holds: no own server then.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.components import build_component
from harness.errors import HarnessError
from harness.model import weights_digest
from harness.protocol import DatasetSplits, PublicDeployment, Split, TrainedVictim
from harness.serving.endpoint import Endpoint, random_client_id
from harness.stages import QUANTILE_LEVELS, Defense, ServerInfo, bind_defense, read_only
from harness.strategy import OutputStrategy
from harness.timing.models import MODELLED, LiveTiming, TimingModel

if TYPE_CHECKING:
    from harness.model import MultiExitNet
    from harness.plugins.registry import Registry


def deployment_timing(deployment: PublicDeployment) -> TimingModel:
    """The timing model the victim's server uses (refused for ``replay``)."""
    if deployment.timing == "live":
        return LiveTiming(repeats=deployment.repeats)
    if deployment.timing not in MODELLED:
        raise HarnessError(f"timing={deployment.timing} draws from a profile only the evaluator "
                           "holds: an attack cannot run an own server under it")
    return MODELLED[deployment.timing](**json.loads(deployment.timing_params_json))


@dataclass(frozen=True)
class OwnResponse:
    """An own server's answer: what the owner sees, true exits included."""

    outputs: np.ndarray
    latency_s: np.ndarray
    admitted: np.ndarray
    exits: np.ndarray
    intended: np.ndarray


@dataclass(frozen=True)
class ForcedExit(OutputStrategy):
    """A strategy whose every query answers at ``exit_index`` (an owner's profiling tool)."""

    exit_index: int = 0

    def exits(self, per_exit_probs) -> np.ndarray:
        return np.full(len(per_exit_probs[0]), self.exit_index, dtype=np.int64)

    def fires_at(self, k: int, probs: np.ndarray) -> np.ndarray:
        return np.full(len(probs), k >= min(self.exit_index, self.num_exits - 1))


def forced_exit(strategy: OutputStrategy, exit_index: int) -> ForcedExit:
    """``strategy``'s policy and thresholds, every query sent to ``exit_index``."""
    if not 0 <= exit_index < strategy.num_exits:
        raise HarnessError(f"forced_exit: exit {exit_index} is not in 0..{strategy.num_exits - 1}")
    return ForcedExit(strategy.policy, strategy.thresholds, exit_index)


class OwnServer:
    """An attacker's network served behind the public deployment (see the module doc)."""

    def __init__(self, endpoint: Endpoint,
                 scratch: tempfile.TemporaryDirectory | None = None) -> None:
        self._endpoint = endpoint
        self._scratch = scratch  # a backend's files (ONNX), removed with the server

    @property
    def num_exits(self) -> int:
        return self._endpoint.served.num_exits

    @property
    def defended(self) -> bool:
        return type(self._endpoint.defense) is not Defense

    def query(self, x: np.ndarray, strategy: OutputStrategy | None = None) -> OwnResponse:
        """Serve ``x`` (under ``strategy`` if given, else the server's own)."""
        endpoint = self._endpoint
        if strategy is not None:  # the server's strategy, for the stages and its info alike
            strategy.validate(endpoint.served.num_exits, endpoint.server.num_classes,
                              "own server strategy")
            endpoint.strategy = strategy
            endpoint.server = replace(endpoint.server, strategy=strategy)
        response = endpoint.respond(np.asarray(x, dtype=np.float32))
        intended = np.full(len(x), -1, dtype=np.int64)
        ok = response.admitted
        if ok.any():
            intended[ok] = endpoint.strategy.exits(
                endpoint.served.exit_probs(np.asarray(x, dtype=np.float32)[ok]))
        outputs = response.probs
        if endpoint.server.output == "label":
            outputs = np.where(ok, np.nan_to_num(outputs).argmax(axis=1), -1)
        return OwnResponse(outputs, response.latency_s, ok, response.exits, intended)


def build_own_server(registry: Registry, deployment: PublicDeployment, network: MultiExitNet,
                     strategy: OutputStrategy, *, cost_fraction: tuple[float, ...] | None,
                     inputs: np.ndarray, rng: np.random.Generator, device: str,
                     cache_dir: Path | None) -> OwnServer:
    """An :class:`OwnServer` for ``network`` (see the module docstring).

    ``cost_fraction`` (the victim family's, when granted) replaces the network's in the
    timing model; ``inputs`` are the owner's, for live latency quantiles; ``rng`` draws the
    fresh key and the server's streams; they are also the own server's calibration inputs
    (a defense that deploys a strategy of its own fits it on its owner's outputs for them,
    and again whenever :meth:`OwnServer.query` is given another strategy).
    """
    timing = deployment_timing(deployment)
    num_classes = int(network.num_classes)
    shape = tuple(int(s) for s in network.input_shape)
    x = np.asarray(inputs, dtype=np.float32)
    empty = Split(x[:0], np.zeros(0, dtype=np.int64))
    data = DatasetSplits("own", shape, num_classes, (0.0, 1.0), empty,
                         Split(x, np.zeros(len(x), dtype=np.int64)), empty, empty)
    own = TrainedVictim("own_server", network, strategy, data, "own", weights_digest(network))
    backend = build_component(registry.get("backend", deployment.backend).cls, {})
    scratch = None if cache_dir is not None else tempfile.TemporaryDirectory(prefix="own-server-")
    served = backend.load(own, device, Path(cache_dir) if scratch is None else Path(scratch.name))
    if (cost_fraction is not None and len(cost_fraction) == served.num_exits
            and not timing.measures):
        served.cost_fraction = tuple(float(c) for c in cost_fraction)
    streams = [np.random.default_rng(rng.integers(0, 2**63)) for _ in range(3)]
    quantiles = timing.exit_quantiles(served, x, QUANTILE_LEVELS, streams[0])
    info = ServerInfo(num_exits=served.num_exits, num_classes=num_classes,
                      cost_fraction=tuple(served.cost_fraction), latency_quantiles=quantiles,
                      quantile_levels=QUANTILE_LEVELS, timing=timing.mode,
                      output=deployment.output, strategy=strategy, secret=rng.bytes(32),
                      calibration=tuple(read_only(np.asarray(p, dtype=np.float64))
                                        for p in served.exit_probs(x)) if len(x) else ())
    if deployment.defense is None:
        defense, label, component = Defense(), "undefended", None
    else:
        entry = registry.get("defense", deployment.defense)
        defense = build_component(entry.cls, deployment.defense_params)
        bind_defense(defense, registry)  # type: ignore[arg-type]
        label, component = entry.label(""), f"defense:{deployment.defense}"
    defense.reset()  # type: ignore[union-attr]
    endpoint = Endpoint(served, strategy, defense, timing, streams[1], streams[2],  # type: ignore[arg-type]
                        server=info, client_id=random_client_id(rng), defense_label=label,
                        defense_component=component)
    return OwnServer(endpoint, scratch)
