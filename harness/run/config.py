"""Parse ``KEY=VALUE`` overrides (and ``--config grid.toml``) into a frozen :class:`RunSpec`.

Grammar (docs/design.md section 7): ``victims=``, ``attacks=``, ``defenses=`` take ``all``,
``a,b`` or ``[a,b]``; ``seeds=0,1,2``; scalar keys below; per-component parameters as
``attack.NAME.PARAM=VALUE`` (likewise ``defense.``, ``victim.``) and timing parameters
as ``timing.PARAM=VALUE``; the threat model as ``threat.num_exits=`` and
``threat.architecture=`` (``granted`` or ``hidden``), ``threat.defense=`` (``known`` or
``hidden``; a ``[threat]`` table in TOML) and
``pool=same|DATASET`` (the attacker's unlabeled pool, :mod:`harness.cell.pool`);
``replicas=N`` (replicas of each victim for the replica agreement, 0 = off;
:mod:`harness.run.replicas`);
``ray.address=`` (a Ray cluster to join with ``executor=ray``; a ``[ray]`` table in TOML).
A parameter sweep, ``sweep.defense.NAME.PARAM=v1,v2,v3`` (or ``[v1,v2]``; likewise
``sweep.attack.`` and ``sweep.victim.``; a ``[sweep.defense.NAME]`` table in TOML), runs
that component once per value (several sweeps of one component: every combination), so
each defense family draws its own cost/leakage frontier.

Scalar keys are checked by the constraint system components use (:mod:`harness.params`):
the cell settings' constraints are :data:`harness.cell.spec.SETTING_CONSTRAINTS`, the
run's own are :data:`RUN_CONSTRAINTS`. Values of parameters are parsed as JSON when they
are valid JSON (numbers, ``[0.9,0.8]``, ``true``, ``null``) and kept as strings otherwise.
Everything is checked here, before any work starts.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cell.spec import (
    DEFAULT_MEMORY,
    MIN_MEMORY,
    MODELLED_TIMINGS,
    SETTING_CONSTRAINTS,
    Settings,
    ThreatModel,
)
from harness.errors import ConfigError
from harness.io.schema import MAX_REPLICAS, MAX_SEED, THREAT_CHOICES
from harness.io.secret import MODES as SECRET_MODES
from harness.params import Interval, ListOf, Options, as_constraint, check_value

LIST_KEYS = ("victims", "attacks", "defenses")
RUN_CONSTRAINTS: dict[str, list[Any]] = {
    "executor": [Options("serial", "process", "ray")],
    "jobs": [Interval("int", 1, 512)],
    "timeout": [Interval("real", 0, None, closed="neither"), None],
    "replicas": [Interval("int", 0, MAX_REPLICAS)],
    "memory": [Interval("int", MIN_MEMORY, None), None],
    "secret": [Options(*SECRET_MODES)],
}
"""The run's own scalar keys (where and how cells run; not part of any cell's result)."""
SEEDS = [ListOf(Interval("int", 0, MAX_SEED), min_len=1)]
SETTING_KEYS = ("budget", "output", "timing", "backend", "device", "repeats", "isolation",
                "transport")
"""Cell settings given as plain keys (``network`` is ``timing.network``, the threat model
``threat.*`` and ``pool``)."""
PATH_KEYS = ("out", "data_root", "cache_dir", "profile")
THREAT_KEYS = tuple(f"threat.{k}" for k in THREAT_CHOICES)
POOL_KEY = "pool"
"""The attacker's unlabeled pool: ``same`` (default) or a registered dataset's name."""
RAY_KEYS = ("ray.address",)
"""Settings of ``executor=ray``: ``ray.address=`` joins a running cluster (``auto`` or
``HOST:PORT``); without it a local instance with ``jobs`` CPUs is started."""
COMPONENT_PREFIXES = {"victim": "victims", "attack": "attacks", "defense": "defenses"}
DEFAULTS: dict[str, Any] = {
    "victims": ("digits_cnn",), "attacks": ("all",), "defenses": ("all",), "seeds": (0,),
    "executor": "serial", "jobs": 1, "timeout": None, "replicas": 3,
    "memory": DEFAULT_MEMORY, "secret": "folder",
    "out": "results", "data_root": None, "cache_dir": None, "profile": None,
}
DEFAULT_REPLICAS = DEFAULTS["replicas"]
MEMORY_UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20,
                "g": 2**30, "gib": 2**30, "t": 2**40, "tib": 2**40}
SCALAR_KEYS = (*SETTING_KEYS, *RUN_CONSTRAINTS, *PATH_KEYS)


def _valid_keys_hint() -> str:
    keys = (*LIST_KEYS, "seeds", *SCALAR_KEYS, POOL_KEY, *THREAT_KEYS, *RAY_KEYS)
    return (f"valid keys: {', '.join(keys)}, "
            "attack.NAME.PARAM, defense.NAME.PARAM, victim.NAME.PARAM, timing.PARAM, "
            "timing.network, sweep.defense.NAME.PARAM (likewise sweep.attack., sweep.victim.)")


@dataclass(frozen=True)
class RunSpec:
    """Everything a grid run needs, parsed and type-checked (names resolved later).

    ``settings`` are what every cell of the run shares (:class:`harness.cell.spec.
    Settings`); the other fields say which cells there are and how they run.
    """

    victims: tuple[str, ...]
    attacks: tuple[str, ...]
    defenses: tuple[str, ...]
    seeds: tuple[int, ...]
    settings: Settings
    executor: str
    jobs: int
    timeout: float | None
    out: Path
    data_root: Path | None
    cache_dir: Path
    profile: Path | None
    component_params: tuple[tuple[str, str, str, Any], ...] = field(default=())
    ray_address: str | None = None
    sweeps: tuple[tuple[str, str, str, tuple[Any, ...]], ...] = field(default=())
    replicas: int = DEFAULT_REPLICAS
    memory: int | None = DEFAULT_MEMORY
    secret: str = "folder"

    def params_for(self, kind: str, name: str) -> dict[str, Any]:
        """Only this component's own parameters."""
        return {p: v for k, n, p, v in self.component_params if k == kind and n == name}


def parse_name_list(key: str, raw: Any) -> tuple[str, ...]:
    if isinstance(raw, list | tuple):
        items = [str(x).strip() for x in raw]
    else:
        text = str(raw).strip()
        if text.startswith("[") != text.endswith("]"):
            raise ConfigError(f"{key}={raw!r}: unbalanced brackets; write {key}=a,b or {key}=[a,b]")
        items = [p.strip() for p in text.strip("[]").split(",")]
    if not items or any(not p for p in items):
        raise ConfigError(f"{key}={raw!r}: empty name in list; write {key}=all, {key}=a,b "
                          f"or {key}=[a,b]")
    if "all" in items and len(items) > 1:
        raise ConfigError(f"{key}={raw!r}: 'all' cannot be combined with other names")
    if len(set(items)) != len(items):
        raise ConfigError(f"{key}={raw!r}: a name is listed twice")
    return tuple(items)


def parse_seeds(raw: Any) -> tuple[int, ...]:
    """``seeds=0,1,2`` (or a list): distinct integers in 0..2**32-1."""
    if isinstance(raw, list | tuple):
        seeds = list(raw)
    else:
        seeds = [_number(item.strip()) for item in str(raw).strip().strip("[]").split(",")]
    check_value("seeds", seeds, SEEDS, shown=raw)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={raw!r}: a seed is listed twice; give distinct seeds, e.g. "
                          "seeds=0,1,2")
    return tuple(int(s) for s in seeds)


def _number(text: str) -> Any:
    """A JSON number when ``text`` is one, else ``text`` (refused by the constraint)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_scalar(key: str, raw: Any) -> Any:
    """A scalar key's value, typed (numbers parsed, paths made paths) and checked against
    its declared constraint; names and choices stay strings."""
    if key in PATH_KEYS:
        return None if raw is None or str(raw).strip() == "" else Path(str(raw)).expanduser()
    if key == "memory":
        raw = parse_memory(raw)
    alternatives = SETTING_CONSTRAINTS.get(key) or RUN_CONSTRAINTS[key]
    value = raw
    if isinstance(raw, str):
        text = raw.strip()
        numeric = any(isinstance(as_constraint(a), Interval) for a in alternatives)
        value = _number(text) if numeric else text
        if None in alternatives and text.lower() in ("none", "null", ""):
            value = None
    check_value(key, value, alternatives, shown=raw)
    return float(value) if key == "timeout" and value is not None else value


def parse_memory(raw: Any) -> Any:
    """``memory=4GiB`` (also ``512MiB``, ``2G``, plain bytes, ``none``) in bytes; what is
    not a size is left for the constraint check to refuse with the allowed values."""
    if not isinstance(raw, str):
        return raw
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", raw)
    if match is None or match.group(2).lower() not in MEMORY_UNITS:
        if raw.strip().lower() in ("none", "null"):
            return None
        raise ConfigError(f"memory={raw!r} is not a size; write e.g. memory=4GiB, 512MiB, "
                          "or memory=none for no limit (a worker's data segment, per worker)")
    return int(float(match.group(1)) * MEMORY_UNITS[match.group(2).lower()])


def parse_sweep(key: str, rest: str, raw: Any) -> tuple[str, str, str, tuple[Any, ...]]:
    """``sweep.KIND.NAME.PARAM=v1,v2`` -> (kind, name, param, values)."""
    parts = rest.split(".")
    if len(parts) != 3 or parts[0] not in COMPONENT_PREFIXES or not all(parts):
        raise ConfigError(f"unknown key {key!r}; a sweep is sweep.defense.NAME.PARAM=v1,v2 "
                          "(or sweep.attack., sweep.victim.)")
    if isinstance(raw, list | tuple):
        values = [parse_value(v) for v in raw]
    else:
        text = str(raw).strip()
        parsed = parse_value(text) if text.startswith("[") else None
        values = (parsed if isinstance(parsed, list) else
                  [parse_value(v.strip()) for v in text.strip("[]").split(",") if v.strip()])
    if not values:
        raise ConfigError(f"{key}={raw!r}: give the values to sweep, e.g. {key}=0.1,0.5,1.0")
    canonical = [json.dumps(v, sort_keys=True) for v in values]
    if len(set(canonical)) != len(canonical):
        raise ConfigError(f"{key}={raw!r}: a value is listed twice")
    return parts[0], parts[1], parts[2], tuple(values)


def _reject_constant(name: str) -> float:
    raise ConfigError(f"value {name} is not allowed: parameters must be finite numbers")


def _check_finite(value: Any, raw: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"value {raw!r} is not a finite number; NaN and infinity are not allowed")
    if isinstance(value, list | tuple):
        return [_check_finite(v, raw) for v in value]
    if isinstance(value, dict):
        return {k: _check_finite(v, raw) for k, v in value.items()}
    return value


def parse_value(raw: Any) -> Any:
    """JSON when it parses (numbers, lists, booleans, null), else the raw string.

    NaN and infinite numbers are refused (they cannot enter a config hash or a result).
    """
    if not isinstance(raw, str):
        return _check_finite(raw, raw)
    stripped = raw.strip()
    if stripped.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        _reject_constant(repr(raw))
    try:
        return _check_finite(json.loads(raw, parse_constant=_reject_constant), raw)
    except json.JSONDecodeError:
        if stripped.startswith(("[", "{")):
            raise ConfigError(f"value {raw!r} looks like a list or object but is not valid "
                              "JSON; write e.g. [0.9,0.8,0.7] or {\"width\":8}") from None
        return raw


def default_cache_dir() -> Path:
    """``$HARNESS_CACHE_DIR``, else ``.cache/harness`` under the working directory."""
    return Path(os.environ.get("HARNESS_CACHE_DIR", ".cache/harness"))


def split_override(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not KEY=VALUE; {_valid_keys_hint()}")
    return key.strip(), value.strip()


def load_toml(path: Path) -> dict[str, str | Any]:
    """Flatten a grid TOML file into override pairs (tables become dotted keys)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--config {path} is a directory; give a grid TOML file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path} is not a text file (not UTF-8); give a grid "
                          "TOML file") from None
    except OSError as exc:
        raise ConfigError(f"--config {path} cannot be read ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: invalid TOML: {exc}") from None
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict[str, Any]) -> None:
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                walk(key, v)
            else:
                flat[key] = v
    walk("", data)
    return flat


@dataclass
class _Parsed:
    """What :func:`parse_overrides` collects before it builds the spec."""

    values: dict[str, Any] = field(default_factory=lambda: dict(DEFAULTS))
    settings: dict[str, Any] = field(default_factory=dict)
    component_params: list[tuple[str, str, str, Any]] = field(default_factory=list)
    timing_params: dict[str, Any] = field(default_factory=dict)
    threat: dict[str, str] = field(default_factory=dict)
    sweeps: list[tuple[str, str, str, tuple[Any, ...]]] = field(default_factory=list)
    ray_address: str | None = None

    def take(self, key: str, raw: Any) -> None:
        head, _, rest = key.partition(".")
        if key in LIST_KEYS:
            self.values[key] = parse_name_list(key, raw)
        elif key == "seeds":
            self.values[key] = parse_seeds(raw)
        elif key in SETTING_KEYS:
            self.settings[key] = parse_scalar(key, raw)
        elif key in SCALAR_KEYS:
            self.values[key] = parse_scalar(key, raw)
        elif head in COMPONENT_PREFIXES and rest.count(".") == 1 and all(rest.split(".")):
            name, param = rest.split(".")
            self.component_params.append((head, name, param, parse_value(raw)))
        elif head == "sweep":
            self.sweeps.append(parse_sweep(key, rest, raw))
        elif key in THREAT_KEYS:
            self.threat[rest] = str(raw).strip()
        elif key == POOL_KEY:
            self.threat["pool"] = str(raw).strip()
        elif key == "ray.address":
            self.ray_address = str(raw).strip() or None
        elif key == "timing.network":
            self.settings["network"] = str(raw).strip()
        elif head == "timing" and rest and "." not in rest:
            self.timing_params[rest] = parse_value(raw)
        else:
            raise ConfigError(f"unknown key {key!r}; {_valid_keys_hint()}")


def parse_overrides(overrides: list[str], config: Path | None = None) -> RunSpec:
    """Merge defaults, the TOML file and command-line overrides (last wins)."""
    pairs: dict[str, Any] = {}
    if config is not None:
        pairs.update(load_toml(config))
    for text in overrides:
        key, value = split_override(text)
        pairs[key] = value
    parsed = _Parsed()
    for key, raw in pairs.items():
        parsed.take(key, raw)
    values = parsed.values
    settings = Settings(**parsed.settings, threat=ThreatModel(**parsed.threat),
                        timing_params_json=json.dumps(parsed.timing_params, sort_keys=True))
    if settings.timing == "replay" and values["profile"] is None:
        raise ConfigError("timing=replay needs profile=PATH (a profile written by "
                          "`harness calibrate`)")
    if parsed.ray_address is not None and values["executor"] != "ray":
        raise ConfigError(f"ray.address={parsed.ray_address} is a setting of executor=ray, but "
                          f"executor={values['executor']}; add executor=ray or drop ray.address")
    if parsed.timing_params and settings.timing not in MODELLED_TIMINGS:
        raise ConfigError(f"timing.{next(iter(parsed.timing_params))} is a parameter of the "
                          f"modelled timings ({', '.join(MODELLED_TIMINGS)}), but "
                          f"timing={settings.timing}; drop it or choose a modelled timing")
    return RunSpec(
        victims=tuple(values["victims"]), attacks=tuple(values["attacks"]),
        defenses=tuple(values["defenses"]), seeds=tuple(values["seeds"]), settings=settings,
        executor=values["executor"], jobs=values["jobs"], timeout=values["timeout"],
        out=Path(values["out"]), data_root=values["data_root"],
        cache_dir=Path(values["cache_dir"] or default_cache_dir()), profile=values["profile"],
        component_params=tuple(sorted(parsed.component_params, key=str)),
        ray_address=parsed.ray_address, sweeps=tuple(sorted(parsed.sweeps, key=str)),
        replicas=values["replicas"], memory=values["memory"], secret=values["secret"])

