"""The server side of a cell: the victim, its serving backend, the timing, and endpoints.

:class:`Server` is built once per cell (victim trained or loaded, served by the cell's
backend, timing model, and the :class:`~harness.stages.ServerInfo` defenses read) and
hands out one :class:`~harness.serving.endpoint.Endpoint` per client and phase, each
with a fresh defense instance and its own named random streams.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from harness.components import build_component
from harness.errors import ConfigError
from harness.isolation.secret import stream_salt
from harness.plugins.registry import Registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import ServedModel, TrainedVictim, VictimContext
from harness.run.grid import CellSpec
from harness.serving.endpoint import Endpoint
from harness.stages import QUANTILE_LEVELS, Defense, ServerInfo, bind_defense
from harness.timing.models import MODELLED, LiveTiming, ReplayTiming, TimingModel


class Stream(IntEnum):
    """Named server streams, ``numpy.random.default_rng([cell seed, stream, *salt])``.

    The salt (:func:`harness.isolation.secret.stream_salt`) keeps them underivable from
    the cell seed the attack receives. The attack's own generators are ``ctx.rng(i)``;
    the numbers are fixed so results stay reproducible across versions.
    """

    ATTACK_DEFENSE = 1
    ATTACK_TIMING = 2
    BENIGN_DEFENSE = 4
    BENIGN_TIMING = 5
    UNDEFENDED_DEFENSE = 6
    FULL_LATENCY = 7
    SERVER_INFO = 8
    BENIGN_PLAN = 9


@dataclass(frozen=True)
class CellEnvironment:
    """Run-level settings that do not change a cell's result."""

    cache_dir: Path
    data_root: Path | None
    profile_path: Path | None = None
    out: Path | None = None
    victim_salt: str = field(default="", repr=False)


def make_timing(cell: CellSpec, env: CellEnvironment, victim: TrainedVictim) -> TimingModel:
    """The cell's timing model; a replay profile must fit the victim."""
    if cell.timing == "live":
        return LiveTiming(repeats=cell.repeats)
    if cell.timing == "replay":
        from harness.timing.profiles import LatencyProfile

        if env.profile_path is None:
            raise ConfigError("timing=replay needs profile=PATH")
        profile = LatencyProfile.load(env.profile_path)
        profile.validate_for(victim.name, victim.model.num_exits, victim.weights_hash)
        return ReplayTiming(profile)
    return MODELLED[cell.timing](**json.loads(cell.timing_params_json))


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
    and the server-side ``secret`` key."""
    quantiles = timing.exit_quantiles(served, victim.data.val.x, QUANTILE_LEVELS, rng)
    return ServerInfo(num_exits=served.num_exits, num_classes=victim.model.num_classes,
                      cost_fraction=tuple(served.cost_fraction), latency_quantiles=quantiles,
                      quantile_levels=QUANTILE_LEVELS, timing=timing.mode, output=output,
                      strategy=victim.strategy, secret=secret)


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

    def rng(self, stream: Stream) -> np.random.Generator:
        """The server's generator for ``stream``, salted (see :mod:`harness.isolation.secret`)."""
        return np.random.default_rng([self.seed, int(stream), *self.salt])

    @classmethod
    def build(cls, cell: CellSpec, registry: Registry, env: CellEnvironment,
              device: str, salt: tuple[int, ...] | None = None,
              victim: TrainedVictim | None = None) -> Server:
        """Load (or take) the victim and describe the server; ``salt`` None derives it."""
        if victim is None:
            victim = prepare_registered_victim(registry, cell.victim.name, cell.victim.params,
                                               env, device)
        served = registry.get("backend", cell.backend).cls().load(victim, device, env.cache_dir)
        timing = make_timing(cell, env, victim)
        if salt is None:
            salt = stream_salt(victim.weights_hash)
        info = describe_server(victim, served, timing, cell.output,
                               np.random.default_rng([cell.seed, Stream.SERVER_INFO, *salt]),
                               secret=defense_secret(cell.seed, tuple(salt)))
        entry = registry.get("defense", cell.defense.name)
        params = cell.defense.params
        label = (f"defense {cell.defense.display!r} (plugin {entry.plugin}, {entry.distribution} "
                 f"{entry.version})")
        def new_defense() -> Defense:
            defense = build_component(entry.cls, params)
            bind_defense(defense, registry)  # type: ignore[arg-type]
            return defense  # type: ignore[return-value]

        return cls(victim, served, timing, info, cell.seed, new_defense, label,
                   f"defense:{cell.defense.name}", tuple(salt))

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
