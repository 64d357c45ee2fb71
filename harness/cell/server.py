"""The server side of a cell: the victim, its serving backend, the timing, and endpoints.

:class:`Server` is built once per cell (victim trained or loaded, served by the cell's
backend, timing model, and the :class:`~harness.stages.ServerInfo` defenses read) and
hands out one :class:`~harness.serving.endpoint.Endpoint` per client and phase, each
with a fresh defense instance and its own named random streams. Where it runs (in the
evaluator's process, or in a server worker) is the cell's roles' business
(:mod:`harness.cell.roles`); both build it with :meth:`Server.build`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

import numpy as np

from harness.cell.spec import CellEnvironment, CellSpec
from harness.components import build_component
from harness.errors import ConfigError, HarnessError
from harness.io.jsonable import to_jsonable
from harness.io.secret import stream_salt
from harness.plugins.registry import Registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import DatasetSplits, ServedModel, Split, TrainedVictim, VictimContext
from harness.serving.endpoint import Endpoint
from harness.stages import (
    QUANTILE_LEVELS,
    Defense,
    ServerInfo,
    bind_defense,
    declared_strategy,
    read_only,
)
from harness.timing.models import MODELLED, LiveTiming, ReplayTiming, TimingModel
from harness.timing.profiles import LatencyProfile


class Stream(IntEnum):
    """Named server streams, ``numpy.random.default_rng([cell seed, stream, *salt])``.

    The salt (:func:`harness.io.secret.stream_salt`) keeps them underivable from
    the cell seed the attack receives. The attack's own generators are ``ctx.rng(i)``;
    the numbers are fixed so results stay reproducible across versions.
    """

    ATTACK_DEFENSE = 1
    ATTACK_TIMING = 2
    BENIGN_TIMING = 5
    UNDEFENDED_DEFENSE = 6
    FULL_LATENCY = 7
    SERVER_INFO = 8
    BENIGN_PLAN = 9
    CAPACITY_DEFENSE = 10
    CAPACITY_TIMING = 11


def make_timing(cell: CellSpec, env: CellEnvironment, victim: TrainedVictim) -> TimingModel:
    """The cell's timing model; a replay profile must fit the victim."""
    settings = cell.settings
    if settings.timing == "live":
        return LiveTiming(repeats=settings.repeats)
    if settings.timing == "replay":
        if env.profile_path is None:
            raise ConfigError("timing=replay needs profile=PATH")
        profile = LatencyProfile.load(env.profile_path)
        profile.validate_for(victim.name, victim.model.num_exits, victim.weights_hash)
        return ReplayTiming(profile)
    return MODELLED[settings.timing](**settings.timing_params)


def prepare_registered_victim(registry: Registry, name: str, params: dict[str, Any],
                              env: CellEnvironment, device: str) -> TrainedVictim:
    """Load a registered victim's dataset and train (or load from cache) the victim."""
    victim = build_component(registry.get("victim", name).cls, params)
    source = registry.get("dataset", victim.dataset).cls()
    if env.victim_salt and "split_seed" in source.get_params():  # secret mode: a private split
        salted = VictimContext(env.cache_dir, device, salt=env.victim_salt)
        params = {**source.get_params(), "split_seed": salted.salted_seed(source.split_seed)}
        source = build_component(type(source), params)
    data = source.load(env.data_root)
    return victim.prepare(data, VictimContext(env.cache_dir, device, Toolbox(registry),
                                              salt=env.victim_salt))


def inputs_only(name: str, shape: tuple[int, ...], classes: int,
                input_range: tuple[float, float], val_x: np.ndarray) -> DatasetSplits:
    """Splits that hold only ``val_x`` (labels zeroed): all of the data a server may keep."""
    val = Split(val_x, np.zeros(len(val_x), dtype=np.int64))
    none = Split(val_x[:0], np.zeros(0, dtype=np.int64))
    return DatasetSplits(name, shape, classes, input_range, none, val, none, none)


def server_view(victim: TrainedVictim, *, keep_inputs: bool = True) -> TrainedVictim:
    """``victim`` as a server holds it: network, strategy and (``keep_inputs``) the
    validation inputs the latency quantiles are measured on; no labels, no other split."""
    data = victim.data
    val_x = np.array(data.val.x) if keep_inputs else data.val.x[:0].copy()
    return replace(victim, data=inputs_only(data.name, tuple(data.input_shape),
                                            data.num_classes, tuple(data.input_range), val_x))


def serve_victim(registry: Registry, backend: str, victim: TrainedVictim, device: str,
                 env: CellEnvironment) -> ServedModel:
    """``victim`` loaded into the registered serving ``backend`` (the server's, and the
    evaluator's own copy for scoring)."""
    return registry.get("backend", backend).cls().load(victim, device, env.cache_dir)


SECRET_LABEL = "harness defense secret"
"""Domain label of :func:`defense_secret` (keeps the key apart from the stream seeds)."""


def defense_secret(seed: int, salt: tuple[int, ...]) -> bytes:
    """The cell's server-side key for keyed defenses: sha256 of (cell seed, salt, label).

    The salt already mixes in ``HARNESS_SECRET`` when set, so the key is no more
    derivable from the cell seed than the server's streams are.
    """
    text = json.dumps([int(seed), [int(v) for v in salt], SECRET_LABEL])
    return hashlib.sha256(text.encode()).digest()


def describe_server(victim: TrainedVictim, served: ServedModel, timing: TimingModel,
                    output: str, rng: np.random.Generator, *, secret: bytes = b"") -> ServerInfo:
    """What defenses may read: exits, classes, costs, per-exit latency quantiles, modes,
    the server-side ``secret`` key and the victim's outputs on the validation inputs
    (``calibration``; the inputs themselves are not kept)."""
    quantiles = timing.exit_quantiles(served, victim.data.val.x, QUANTILE_LEVELS, rng)
    return ServerInfo(num_exits=served.num_exits, num_classes=victim.model.num_classes,
                      cost_fraction=tuple(served.cost_fraction), latency_quantiles=quantiles,
                      quantile_levels=QUANTILE_LEVELS, timing=timing.mode, output=output,
                      strategy=victim.strategy, secret=secret,
                      calibration=calibration_outputs(served, victim.data.val.x))


def calibration_outputs(served: ServedModel, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every exit's probabilities of ``x`` (read-only): a server's calibration outputs."""
    if not len(x):
        return ()
    return tuple(read_only(np.asarray(p, dtype=np.float64)) for p in served.exit_probs(x))


def _no_defense() -> Defense:
    raise HarnessError("the server has no defense yet (Server.with_defense was not called)")


@dataclass(frozen=True)
class Server:
    """One cell's server: hands out endpoints, each with a fresh defense in the same state."""

    victim: TrainedVictim
    served: ServedModel
    timing: TimingModel
    info: ServerInfo
    seed: int
    new_defense: Callable[[], Defense]
    defense_label: str
    defense_component: str
    salt: tuple[int, ...] = ()
    deployed: dict[str, Any] | None = None
    """The defense's declared deployed strategy (:meth:`declare`), once it has one."""

    def rng(self, stream: Stream) -> np.random.Generator:
        """The server's generator for ``stream``, salted (see :mod:`harness.io.secret`)."""
        return np.random.default_rng([self.seed, int(stream), *self.salt])

    @classmethod
    def build(cls, cell: CellSpec, registry: Registry, env: CellEnvironment,
              device: str, salt: tuple[int, ...] | None = None,
              victim: TrainedVictim | None = None, with_defense: bool = True) -> Server:
        """Load (or take) the victim and describe the server; ``salt`` None derives it;
        without ``with_defense``, no defense until :meth:`with_defense`."""
        if victim is None:
            victim = prepare_registered_victim(registry, cell.victim.name, cell.victim.params,
                                               env, device)
        served = serve_victim(registry, cell.settings.backend, victim, device, env)
        timing = make_timing(cell, env, victim)
        if salt is None:
            salt = stream_salt(cell.victim.identity)
        info = describe_server(victim, served, timing, cell.settings.output,
                               np.random.default_rng([cell.seed, Stream.SERVER_INFO, *salt]),
                               secret=defense_secret(cell.seed, tuple(salt)))
        server = cls(victim, served, timing, info, cell.seed, _no_defense, "", "", tuple(salt))
        return server.with_defense(cell, registry) if with_defense else server

    def with_defense(self, cell: CellSpec, registry: Registry) -> Server:
        """This server with the cell's defense from ``registry`` (a confined server worker
        builds the server from trusted plugins first, then loads the defense's)."""
        entry = registry.get("defense", cell.defense.name)
        params = cell.defense.params

        def new_defense() -> Defense:
            defense = build_component(entry.cls, params)
            bind_defense(defense, registry)  # type: ignore[arg-type]
            return defense  # type: ignore[return-value]

        server = replace(self, new_defense=new_defense,
                         defense_label=entry.label(cell.defense.display),
                         defense_component=f"defense:{cell.defense.name}")
        return replace(server, deployed=server.declare())

    def declare(self) -> dict[str, Any] | None:
        """The strategy the defense deploys instead of the victim's
        (:meth:`~harness.stages.Defense.deployed_strategy` of a fresh instance), as
        ``{"strategy": JSON}``; ``{"failure": message}`` when asking it failed; None when
        it deploys the victim's own. The evaluator rebuilds and scores against it."""
        try:
            strategy = declared_strategy(self.new_defense(), self.info)
            if strategy is None:
                return None
            strategy.validate(self.info.num_exits, self.info.num_classes,
                              owner="its deployed strategy")
            return {"strategy": to_jsonable(strategy.to_json())}
        except Exception as exc:  # the defense's failure, recorded when the cell scores
            return {"failure": f"{self.defense_label}: deployed_strategy raised "
                               f"{type(exc).__name__}: {exc}"[:2000]}

    def endpoint(self, defense_stream: Stream, timing_stream: Stream, *, client_id: str,
                 defended: bool = True) -> Endpoint:
        """An endpoint for one client and phase (a fresh, reset defense when ``defended``)."""
        if defended:
            defense = self.new_defense()
            defense.reset()
            label, component = self.defense_label, self.defense_component
        else:
            defense, label, component = Defense(), "undefended", None
        return Endpoint(self.served, self.victim.strategy, defense, self.timing,
                        self.rng(defense_stream), self.rng(timing_stream),
                        server=self.info, client_id=client_id, defense_label=label,
                        defense_component=component)

    def full_latency(self, x: np.ndarray) -> np.ndarray:
        """The full network's latency for each input (the no-early-exit baseline)."""
        last = np.full(len(x), self.served.num_exits - 1, dtype=np.int64)
        if self.timing.measures:
            return self.timing.serve(self.served, x, None, last).latency_s
        return self.timing.latencies(last, self.served.cost_fraction,
                                     self.rng(Stream.FULL_LATENCY))


def role_server(cell: CellSpec, registry: Registry, env: CellEnvironment, device: str,
                salt: tuple[int, ...], victim: TrainedVictim | None,
                with_defense: bool = True) -> Server:
    """The server a cell's server role holds (in the evaluator or in a worker): built from
    the victim's :func:`server_view` (or, with no victim given, from the cache), then
    keeping no data at all, so a defense finds no labels and no test inputs."""
    server = Server.build(cell, registry, env, device, salt=salt,
                          victim=None if victim is None else server_view(victim),
                          with_defense=with_defense)
    return replace(server, victim=server_view(server.victim, keep_inputs=False))
