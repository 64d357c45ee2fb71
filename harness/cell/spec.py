"""What determines one cell, as frozen data: its components, its seed and its settings.

A cell is (victim, defense, attack, seed) plus the :class:`Settings` every cell of a run
shares (budget, output, timing, backend, device, threat model, isolation, ...). The run
keys of those settings are declared once, here, as constraints of the same kind a
component declares (:data:`SETTING_CONSTRAINTS`, :mod:`harness.params`), and checked by
the same code. :meth:`CellSpec.to_json` is what results record and config hashes cover.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cell.pool import check_pool_name
from harness.errors import ConfigError
from harness.io.schema import THREAT_CHOICES
from harness.params import ComponentName, Interval, Options, check_value
from harness.timing.deployments import DEFAULT_DEPLOYMENT
from harness.timing.network import NETWORK_PROFILES

MAX_BUDGET = 1_000_000
"""Most queries one attack may make (1 query = 1 input; repeats, synthetic inputs and
refused queries all count), so a typo cannot allocate without bound."""
TIMING_MODES = ("realistic", "analytic", "replay", "live")
MODELLED_TIMINGS = ("realistic", "analytic")
"""Timing modes whose parameters are ``timing.PARAM=`` keys."""

SETTING_CONSTRAINTS: dict[str, list[Any]] = {
    "budget": [Interval("int", 1, MAX_BUDGET)],
    "output": [Options("probs", "label")],
    "timing": [Options(*TIMING_MODES)],
    "backend": [ComponentName("backend")],
    "device": [Options("cpu", "cuda", "auto")],
    "repeats": [Interval("int", 1, 1000)],
    "isolation": [Options("process", "none")],
    "transport": [Options("inproc", "http")],
    "network": [Options(*NETWORK_PROFILES)],
}
"""The run keys of :class:`Settings` and what each allows (``harness run KEY=VALUE``)."""
SETTING_KEY_NAMES = {"network": "timing.network"}
"""Settings whose run key is not their field name."""


@dataclass(frozen=True)
class ThreatModel:
    """What the attacker is told about the victim beyond the oracle (each ``granted``/``hidden``).

    ``num_exits``: the number of exits; ``architecture``: the victim's network family
    (and, with both granted, its exits' cost fractions); ``pool``: the attacker's
    unlabeled pool (``same`` or a dataset name, :mod:`harness.cell.pool`); ``defense``:
    whether the defense's code and parameters are public (``known``, Kerckhoffs's
    principle) so that an attack may run them on an own server
    (:mod:`harness.serving.own_server`), or ``hidden``. Part of every cell's config;
    ``pool`` and ``defense`` are written only when not the default, so cells from before
    the keys keep their config hash.
    """

    num_exits: str = "granted"
    architecture: str = "granted"
    pool: str = "same"
    defense: str = "known"

    def __post_init__(self) -> None:
        for key, choices in THREAT_CHOICES.items():
            check_value(f"threat.{key}", getattr(self, key), [Options(*choices)])
        check_pool_name(self.pool)

    @property
    def grants_num_exits(self) -> bool:
        return self.num_exits == "granted"

    @property
    def grants_architecture(self) -> bool:
        return self.architecture == "granted"

    @property
    def knows_defense(self) -> bool:
        return self.defense == "known"

    def to_json(self) -> dict[str, str]:
        return {"num_exits": self.num_exits, "architecture": self.architecture,
                **({"pool": self.pool} if self.pool != "same" else {}),
                **({"defense": self.defense} if self.defense != "known" else {})}


@dataclass(frozen=True)
class Settings:
    """What every cell of a run shares besides its components and seed.

    ``timing_params_json`` holds the ``timing.PARAM=`` values (canonical JSON); under
    ``timing=realistic`` it always names the deployment (the default one when the run did
    not), so every cell records it and it is part of the group key. ``profile_hash`` cites
    the replay profile (set when the grid is expanded).
    """

    budget: int = 500
    output: str = "probs"
    timing: str = "realistic"
    timing_params_json: str = "{}"
    backend: str = "torch"
    device: str = "cpu"
    repeats: int = 1
    threat: ThreatModel = field(default_factory=ThreatModel)
    isolation: str = "process"
    transport: str = "inproc"
    network: str = "none"
    profile_hash: str | None = None

    def __post_init__(self) -> None:
        for key, alternatives in SETTING_CONSTRAINTS.items():
            check_value(SETTING_KEY_NAMES.get(key, key), getattr(self, key), alternatives)
        if self.network != "none" and self.isolation != "process":
            raise ConfigError(f"timing.network={self.network} is added by the attack's client "
                              "process; it needs isolation=process (drop isolation=none)")
        if self.transport == "http" and self.isolation != "process":
            raise ConfigError("transport=http needs isolation=process (the attack's client "
                              "process talks HTTP to the cell's server); drop isolation=none")
        if self.timing == "realistic" and "deployment" not in self.timing_params:
            object.__setattr__(self, "timing_params_json", json.dumps(
                {**self.timing_params, "deployment": DEFAULT_DEPLOYMENT}, sort_keys=True))

    @property
    def timing_params(self) -> dict[str, Any]:
        return json.loads(self.timing_params_json)

    def to_json(self) -> dict[str, Any]:
        """The settings as results record them (optional keys only when not the default)."""
        return {"budget": self.budget, "output": self.output,
                "timing": {"mode": self.timing, "params": self.timing_params,
                           "profile_hash": self.profile_hash},
                "backend": self.backend, "device": self.device, "repeats": self.repeats,
                "threat": self.threat.to_json(), "isolation": self.isolation,
                **({"transport": self.transport} if self.transport != "inproc" else {}),
                **({"network": self.network} if self.network != "none" else {})}



@dataclass(frozen=True)
class ComponentSpec:
    """A component chosen for a cell: kind, name and its own JSON-serialisable params."""

    kind: str
    name: str
    params_json: str = "{}"
    label: str = field(default="", compare=False)
    """How results name it (``pad_bucket+rounding`` for a stack); not part of the hash."""

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(self.params_json)

    @property
    def display(self) -> str:
        return self.label or self.name

    @property
    def identity(self) -> str:
        """Name and canonical parameters: what salts a victim's server streams."""
        return f"{self.kind}:{self.name}|{self.params_json}"


@dataclass(frozen=True)
class CellSpec:
    """Everything that determines one cell's result (and hence its config hash).

    ``settings.threat`` is recorded under its own ``"threat"`` key of :meth:`to_json`,
    beside the keys cells have always had, so older results (which lack it) still read as
    granted/granted and compare with new ones key by key. Its ``pool`` is resolved per
    victim (``same`` when it names the victim's own dataset).
    """

    victim: ComponentSpec
    defense: ComponentSpec
    attack: ComponentSpec
    seed: int
    settings: Settings = field(default_factory=Settings)

    def to_json(self) -> dict[str, Any]:
        comp = {k: {"name": getattr(self, k).name, "params": getattr(self, k).params}
                for k in ("victim", "defense", "attack")}
        return {**comp, "seed": self.seed, **self.settings.to_json()}

    @property
    def label(self) -> str:
        return (f"{self.victim.display} x {self.defense.display} x {self.attack.display} "
                f"(seed {self.seed})")


DEFAULT_MEMORY = 4 * 2**30
"""``memory=`` default: 4 GiB of data per plugin worker (a worker with torch loaded uses
about 0.9 GiB; the digits cells' workers stay under 1.5 GiB)."""
MIN_MEMORY = 2 * 2**30
"""The smallest ``memory=``: a worker that imported torch already holds about 0.9 GiB."""


@dataclass(frozen=True)
class CellEnvironment:
    """Run-level settings that do not change a cell's result (``memory_bytes``: each
    plugin worker's data limit, ``memory=``; ``timeout_s``, ``timeout=``, sets its CPU
    time limit; only a hog reaches either)."""

    cache_dir: Path
    data_root: Path | None
    profile_path: Path | None = None
    out: Path | None = None
    victim_salt: str = field(default="", repr=False)
    memory_bytes: int | None = DEFAULT_MEMORY
    timeout_s: float | None = None
    rewrites: frozenset[str] = frozenset()
    """Result files this run writes while cells run (re-run, forced or untrusted cells):
    the driver's own writes, which the tripwire must not take for tampering."""

