"""Parse ``KEY=VALUE`` overrides (and ``--config grid.toml``) into a frozen :class:`RunSpec`.

Grammar (DESIGN section 7): ``victims=``, ``attacks=``, ``defenses=`` take ``all``,
``a,b`` or ``[a,b]``; ``seeds=0,1,2``; scalar keys below; per-component parameters as
``attack.NAME.PARAM=VALUE`` (likewise ``defense.``, ``victim.``) and timing parameters
as ``timing.PARAM=VALUE``; the threat model as ``threat.num_exits=`` and
``threat.architecture=`` (``granted`` or ``hidden``; a ``[threat]`` table in TOML) and
``pool=same|DATASET`` (the attacker's unlabeled pool, :mod:`harness.run.pool`);
``replicas=N`` (replicas of each victim for the replica ceiling, 0 = off;
:mod:`harness.run.replicas`);
``ray.address=`` (a Ray cluster to join with ``executor=ray``; a ``[ray]`` table in TOML).
A parameter sweep, ``sweep.defense.NAME.PARAM=v1,v2,v3`` (or ``[v1,v2]``; likewise
``sweep.attack.`` and ``sweep.victim.``; a ``[sweep.defense.NAME]`` table in TOML), runs
that component once per value (several sweeps of one component: every combination), so
each defense family draws its own cost/leakage frontier.
Values of parameters are parsed as JSON when they are valid JSON (numbers,
``[0.9,0.8]``, ``true``, ``null``) and kept as strings otherwise.
Everything is checked here, before any work starts.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

LIST_KEYS = ("victims", "attacks", "defenses")
CHOICES = {
    "output": ("probs", "label"),
    "timing": ("realistic", "analytic", "replay", "live"),
    "device": ("cpu", "cuda", "auto"),
    "executor": ("serial", "process", "ray"),
    "isolation": ("process", "none"),
    "transport": ("inproc", "http"),
}
MODELLED_TIMINGS = ("realistic", "analytic")
"""Timing modes whose parameters are ``timing.PARAM=`` keys."""
MAX_BUDGET = 1_000_000
"""Most queries one attack may make (1 query = 1 input; repeats, synthetic inputs and
refused queries all count), so a typo cannot allocate without bound."""
MAX_SEED = 2**32 - 1
INT_LIMITS = {"budget": MAX_BUDGET, "jobs": 512, "repeats": 1000}
INT_KEYS = tuple(INT_LIMITS)
FLOAT_KEYS = ("timeout",)
PATH_KEYS = ("out", "data_root", "cache_dir", "profile")
NAME_KEYS = ("backend",)
"""Names of registered components (checked against the registry when the grid expands)."""
SCALAR_KEYS = (*CHOICES, *NAME_KEYS, *INT_KEYS, *FLOAT_KEYS, *PATH_KEYS)
THREAT_CHOICES = {"num_exits": ("granted", "hidden"), "architecture": ("granted", "hidden")}
"""What the threat model may grant an attack (``threat.KEY=``); ``granted`` is the default."""
THREAT_KEYS = tuple(f"threat.{k}" for k in THREAT_CHOICES)
POOL_KEY = "pool"
"""The attacker's unlabeled pool: ``same`` (default) or a registered dataset's name."""
REPLICAS_KEY = "replicas"
MAX_REPLICAS = 20
"""``replicas=0..20``: independently retrained replicas per victim (0 turns the ceiling off)."""
DEFAULT_REPLICAS = 3
RAY_KEYS = ("ray.address",)
"""Settings of ``executor=ray``: ``ray.address=`` joins a running cluster (``auto`` or
``HOST:PORT``); without it a local instance with ``jobs`` CPUs is started."""
COMPONENT_PREFIXES = {"victim": "victims", "attack": "attacks", "defense": "defenses"}
DEFAULTS: dict[str, Any] = {
    "victims": ("digits_cnn",), "attacks": ("all",), "defenses": ("all",), "seeds": (0,),
    "budget": 500, "output": "probs", "timing": "realistic", "backend": "torch",
    "device": "cpu", "executor": "serial", "isolation": "process", "transport": "inproc",
    "jobs": 1, "repeats": 1, "timeout": None,
    "out": "results", "data_root": None, "cache_dir": None, "profile": None,
}


def _valid_keys_hint() -> str:
    keys = (*LIST_KEYS, 'seeds', *SCALAR_KEYS, POOL_KEY, REPLICAS_KEY, *THREAT_KEYS, *RAY_KEYS)
    return (f"valid keys: {', '.join(keys)}, "
            "attack.NAME.PARAM, defense.NAME.PARAM, victim.NAME.PARAM, timing.PARAM, "
            "timing.network, sweep.defense.NAME.PARAM (likewise sweep.attack., sweep.victim.)")


@dataclass(frozen=True)
class ThreatModel:
    """What the attacker is told about the victim beyond the oracle (each ``granted``/``hidden``).

    ``num_exits``: the number of exits; ``architecture``: the victim's network family
    (and, with both granted, its exits' cost fractions); ``pool``: the attacker's
    unlabeled pool (``same`` or a dataset name, :mod:`harness.run.pool`). Part of every
    cell's config; ``pool`` is written only when it is not ``same``, so cells from before
    the key keep their config hash.
    """

    num_exits: str = "granted"
    architecture: str = "granted"
    pool: str = "same"

    def __post_init__(self) -> None:
        for key, choices in THREAT_CHOICES.items():
            value = getattr(self, key)
            if value not in choices:
                raise ConfigError(f"threat.{key}={value!r} is not allowed; choose one of "
                                  f"{', '.join(choices)}")
        from harness.run.pool import check_pool_name

        check_pool_name(self.pool)

    @property
    def grants_num_exits(self) -> bool:
        return self.num_exits == "granted"

    @property
    def grants_architecture(self) -> bool:
        return self.architecture == "granted"

    def to_json(self) -> dict[str, str]:
        return {"num_exits": self.num_exits, "architecture": self.architecture,
                **({"pool": self.pool} if self.pool != "same" else {})}


@dataclass(frozen=True)
class RunSpec:
    """Everything a grid run needs, parsed and type-checked (names resolved later)."""

    victims: tuple[str, ...]
    attacks: tuple[str, ...]
    defenses: tuple[str, ...]
    seeds: tuple[int, ...]
    budget: int
    output: str
    timing: str
    backend: str
    device: str
    executor: str
    jobs: int
    repeats: int
    timeout: float | None
    out: Path
    data_root: Path | None
    cache_dir: Path
    profile: Path | None
    component_params: tuple[tuple[str, str, str, Any], ...] = field(default=())
    timing_params: tuple[tuple[str, Any], ...] = field(default=())
    threat: ThreatModel = field(default_factory=ThreatModel)
    isolation: str = "process"
    transport: str = "inproc"
    network: str = "none"
    ray_address: str | None = None
    sweeps: tuple[tuple[str, str, str, tuple[Any, ...]], ...] = field(default=())
    replicas: int = DEFAULT_REPLICAS

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
    items = raw if isinstance(raw, list | tuple) else str(raw).strip().strip("[]").split(",")
    seeds = []
    for item in items:
        try:
            if isinstance(item, bool | float):
                raise ValueError
            seed = int(str(item).strip())
        except ValueError:
            raise ConfigError(f"seeds={raw!r}: {item!r} is not an integer; write seeds=0,1,2") from None
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"seeds={raw!r}: seed {seed} is outside 0..{MAX_SEED} (2**32 - 1)")
        seeds.append(seed)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={raw!r}: give distinct non-negative integers, e.g. seeds=0,1,2")
    return tuple(seeds)


def parse_replicas(raw: Any) -> int:
    """``replicas=N``: an integer in 0..MAX_REPLICAS (0 turns the replica ceiling off)."""
    try:
        if isinstance(raw, bool | float):
            raise ValueError
        value = int(str(raw).strip())
    except ValueError:
        raise ConfigError(f"replicas={raw!r} is not an integer; give 0 (no replica ceiling) "
                          f"to {MAX_REPLICAS}") from None
    if not 0 <= value <= MAX_REPLICAS:
        raise ConfigError(f"replicas={value} is outside 0..{MAX_REPLICAS} (0 turns the replica "
                          "ceiling off)")
    return value


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


def _scalar(key: str, raw: Any) -> Any:
    if key in CHOICES:
        value = str(raw)
        if value not in CHOICES[key]:
            raise ConfigError(f"{key}={raw!r} is not allowed; choose one of {', '.join(CHOICES[key])}")
        return value
    if key in NAME_KEYS:
        value = str(raw).strip()
        if not value:
            raise ConfigError(f"{key}= is empty; give a registered {key} name (harness list)")
        return value
    if key in INT_KEYS:
        try:
            if isinstance(raw, bool | float):
                raise ValueError
            value = int(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{key}={raw!r} is not an integer; give a whole number in "
                              f"1..{INT_LIMITS[key]:,}") from None
        if not 1 <= value <= INT_LIMITS[key]:
            raise ConfigError(f"{key}={value} is outside the allowed range 1..{INT_LIMITS[key]:,}")
        return value
    if key in FLOAT_KEYS:
        if raw is None or str(raw).lower() in ("none", "null"):
            return None
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = float(str(raw))
        except ValueError:
            raise ConfigError(f"{key}={raw!r} is not a number of seconds") from None
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{key}={raw!r} must be a finite number of seconds > 0 "
                              f"(or {key}=none)")
        return value
    return None if raw is None or raw == "" else Path(str(raw)).expanduser()


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


def parse_overrides(overrides: list[str], config: Path | None = None) -> RunSpec:
    """Merge defaults, the TOML file and command-line overrides (last wins)."""
    pairs: dict[str, Any] = {}
    if config is not None:
        pairs.update(load_toml(config))
    for text in overrides:
        key, value = split_override(text)
        pairs[key] = value
    values = dict(DEFAULTS)
    component_params: list[tuple[str, str, str, Any]] = []
    timing_params: list[tuple[str, Any]] = []
    threat: dict[str, str] = {}
    replicas = DEFAULT_REPLICAS
    ray_address: str | None = None
    network = "none"
    sweeps: list[tuple[str, str, str, tuple[Any, ...]]] = []
    for key, raw in pairs.items():
        head, _, rest = key.partition(".")
        if key in LIST_KEYS:
            values[key] = parse_name_list(key, raw)
        elif key == "seeds":
            values[key] = parse_seeds(raw)
        elif key in SCALAR_KEYS:
            values[key] = raw
        elif head in COMPONENT_PREFIXES and rest.count(".") == 1 and all(rest.split(".")):
            name, param = rest.split(".")
            component_params.append((head, name, param, parse_value(raw)))
        elif head == "sweep":
            sweeps.append(parse_sweep(key, rest, raw))
        elif key in THREAT_KEYS:
            threat[rest] = str(raw).strip()
        elif key == POOL_KEY:
            threat["pool"] = str(raw).strip()
        elif key == REPLICAS_KEY:
            replicas = parse_replicas(raw)
        elif key == "ray.address":
            ray_address = str(raw).strip() or None
        elif key == "timing.network":
            network = str(raw).strip()
        elif head == "timing" and rest and "." not in rest:
            timing_params.append((rest, parse_value(raw)))
        else:
            raise ConfigError(f"unknown key {key!r}; {_valid_keys_hint()}")
    for key in SCALAR_KEYS:
        if values[key] is not None:
            values[key] = _scalar(key, values[key])
    cache = values["cache_dir"] or default_cache_dir()
    if values["timing"] == "replay" and values["profile"] is None:
        raise ConfigError("timing=replay needs profile=PATH (a profile written by "
                          "`harness calibrate`)")
    from harness.timing.network import network_profile

    network_profile(network)  # unknown profiles list the valid ones
    if network != "none" and values["isolation"] != "process":
        raise ConfigError(f"timing.network={network} is added by the attack's client process; "
                          "it needs isolation=process (drop isolation=none)")
    if values["transport"] == "http" and values["isolation"] != "process":
        raise ConfigError("transport=http needs isolation=process (the attack's client process "
                          "talks HTTP to the cell's server); drop isolation=none")
    if ray_address is not None and values["executor"] != "ray":
        raise ConfigError(f"ray.address={ray_address} is a setting of executor=ray, but "
                          f"executor={values['executor']}; add executor=ray or drop ray.address")
    if timing_params and values["timing"] not in MODELLED_TIMINGS:
        raise ConfigError(f"timing.{timing_params[0][0]} is a parameter of the modelled timings "
                          f"({', '.join(MODELLED_TIMINGS)}), but timing={values['timing']}; "
                          "drop it or choose a modelled timing")
    return RunSpec(
        victims=tuple(values["victims"]), attacks=tuple(values["attacks"]),
        defenses=tuple(values["defenses"]), seeds=tuple(values["seeds"]),
        budget=values["budget"], output=values["output"], timing=values["timing"],
        backend=values["backend"], device=values["device"], executor=values["executor"],
        isolation=values["isolation"], transport=values["transport"], network=network,
        jobs=values["jobs"], repeats=values["repeats"], timeout=values["timeout"],
        out=values["out"], data_root=values["data_root"], cache_dir=Path(cache),
        profile=values["profile"], component_params=tuple(sorted(component_params, key=str)),
        timing_params=tuple(sorted(timing_params, key=str)), threat=ThreatModel(**threat),
        ray_address=ray_address, sweeps=tuple(sorted(sweeps, key=str)), replicas=replicas,
    )
