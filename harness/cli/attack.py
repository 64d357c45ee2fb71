"""``harness attack NAME --oracle http://HOST:PORT KEY=VALUE ...``: one attack on a remote server.

The attack gets an :class:`~harness.serving.http.client.HttpOracle` and an
:class:`~harness.protocol.AttackContext` built from what ``GET /health`` says plus the
attacker's own threat settings; the stolen model is written as data (state dict +
architecture + strategy JSON) with the attack's diagnostics. True exits are not
available from a remote server, so nothing is scored here.

Keys: ``attack.NAME.PARAM=``, ``seed=``, ``budget=`` (at most the server's per-client
budget), ``out=DIR`` (default ``stolen/NAME-seedS``), ``client_id=``, ``device=``,
``cache_dir=``, ``data_root=``, ``pool=DATASET`` (the attacker's unlabeled pool: that
dataset's attacker split, checked like ``harness run``'s ``pool=`` by
:mod:`harness.cell.pool`; default, or ``same``: the dataset of the victim the server names),
``threat.num_exits=hidden|K`` and ``threat.architecture=hidden|NAME`` (what the attacker
believes it knows; default hidden), ``timing.network=none|lan|wan`` (jitter added to
the measured latency) and ``per_sample=true|false`` (one request per input).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.cell.attacker import AttackerRequest, attack_failure, run_attack
from harness.cell.pool import SAME, load_pool
from harness.cell.spec import MAX_BUDGET
from harness.cell.stolen import encode_stolen, save_stolen
from harness.components import build_component
from harness.errors import ConfigError, HarnessError
from harness.io.jsonable import to_jsonable
from harness.io.schema import MAX_SEED
from harness.plugins.registry import Registry, load_registry
from harness.plugins.toolbox import Toolbox
from harness.run.config import default_cache_dir, parse_value, split_override
from harness.serving.devices import resolve_device
from harness.serving.http.client import HttpOracle
from harness.serving.http.wire import CLIENT_ID
from harness.timing.network import network_profile

KEYS = ("seed", "budget", "out", "client_id", "device", "cache_dir", "data_root", "pool",
        "threat.num_exits", "threat.architecture", "timing.network", "per_sample")


def _int(key: str, raw: str, low: int, high: int) -> int:
    if not raw.strip().isdigit() or not low <= int(raw) <= high:
        raise ConfigError(f"attack: {key}={raw!r} must be an integer in {low}..{high:,}")
    return int(raw)


def parse_keys(name: str, overrides: list[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """(options, the attack's own parameters); unknown keys list the valid ones."""
    opts = {"seed": "0", "client_id": "attacker", "device": "cpu", "threat.num_exits": "hidden",
            "threat.architecture": "hidden", "timing.network": "none", "per_sample": "true"}
    params: dict[str, Any] = {}
    for text in overrides:
        key, value = split_override(text)
        if key in KEYS:
            opts[key] = value
        elif key.startswith(f"attack.{name}.") and key.count(".") == 2:
            params[key.rsplit(".", 1)[1]] = parse_value(value)
        else:
            raise ConfigError(f"attack: unknown key {key!r}; valid keys: {', '.join(KEYS)}, "
                              f"attack.{name}.PARAM")
    _int("seed", opts["seed"], 0, MAX_SEED)
    if "budget" in opts:
        _int("budget", opts["budget"], 1, MAX_BUDGET)
    if not CLIENT_ID.fullmatch(opts["client_id"]):
        raise ConfigError(f"attack: client_id={opts['client_id']!r} must be 1-64 letters, digits, "
                          "'.', '_' or '-'")
    if opts["per_sample"] not in ("true", "false"):
        raise ConfigError(f"attack: per_sample={opts['per_sample']!r} must be true or false")
    if opts["threat.num_exits"] != "hidden":
        _int("threat.num_exits", opts["threat.num_exits"], 2, 64)
    network_profile(opts["timing.network"])
    return opts, params


def _request(name: str, params: dict[str, Any], opts: dict[str, str], health: dict[str, Any],
             budget: int, pool: np.ndarray, registry: Registry) -> AttackerRequest:
    """The attack's request: the task from /health, exits/family from the attacker's beliefs."""
    shape = tuple(int(s) for s in health["input_shape"])
    classes = int(health["num_classes"])
    k = None if opts["threat.num_exits"] == "hidden" else int(opts["threat.num_exits"])
    family = None if opts["threat.architecture"] == "hidden" else opts["threat.architecture"]
    cost = None
    if family is not None:
        registry.get("architecture", family)  # unknown names list the registered ones
        if k is not None:  # the attacker measures the cost fractions on its own copy
            cost = Toolbox(registry).new_network(family, shape, classes, k, 0).cost_fraction
    return AttackerRequest(attack=name, params=params, attacker_x=pool, seed=int(opts["seed"]),
                           device=resolve_device(opts["device"]), budget=budget,
                           output=health["output"], input_shape=shape, num_classes=classes,
                           input_range=tuple(health["input_range"]), num_exits=k,
                           victim_family=family, cost_fraction=cost,
                           network=opts["timing.network"])


def _pool(opts: dict[str, str], health: dict[str, Any], registry: Registry) -> np.ndarray:
    """The attacker split of ``pool=`` (default: the dataset of the victim /health names)."""
    name = opts.get("pool")
    if name in (None, SAME):
        victim = health["victim"]
        if victim not in registry.names("victim"):
            raise ConfigError(f"attack: the server's victim {victim!r} is not registered here, "
                              "so its dataset is unknown; give pool=DATASET (harness list "
                              "datasets)")
        name = registry.get("victim", victim).cls.dataset
    root = Path(opts["data_root"]) if opts.get("data_root") else None
    return load_pool(registry, name, root, health["input_shape"], health["input_range"],
                     f"the server's victim {health.get('victim')!r}", who="attack")


def attack_command(name: str, url: str, overrides: list[str], strict: bool) -> int:
    opts, params = parse_keys(name, overrides)
    registry = load_registry(strict=strict, untrusted="import")  # the user's own attack
    entry = registry.get("attack", name)
    if entry.cls.reference:
        raise ConfigError(f"attack: {name!r} is a reference attack (it reads true exits), which "
                          "a remote server never reveals; choose a real attack")
    attack = build_component(entry.cls, params)
    attack.validate(registry)
    oracle = HttpOracle(url, opts["client_id"], per_sample=opts["per_sample"] == "true",
                        network=opts["timing.network"], seed=int(opts["seed"]),
                        budget=int(opts["budget"]) if "budget" in opts else None)
    pool = _pool(opts, oracle.health, registry)
    request = _request(name, attack.get_params(), opts, oracle.health, oracle.budget, pool,
                       registry)
    cache_dir = Path(opts.get("cache_dir") or default_cache_dir())
    out = Path(opts.get("out") or f"stolen/{name}-seed{opts['seed']}")
    try:
        with oracle:
            stolen = run_attack(request, oracle, registry, cache_dir)
            record = encode_stolen(stolen)
    except HarnessError:
        raise
    except Exception as exc:
        raise attack_failure(type(exc).__name__, str(exc), False, entry.label(),
                             f"attack:{name}") from exc
    compute = np.array(oracle.server_compute_s or [np.nan])
    extra = {"attack": {"name": name, "params": attack.get_params(), "plugin": entry.plugin},
             "server": {"url": oracle.url, "health": oracle.health},
             "client_id": opts["client_id"], "seed": int(opts["seed"]),
             "queries_used": oracle.queries_used, "per_sample": oracle.per_sample,
             "network_jitter": oracle.network.name,
             "threat": {"num_exits": opts["threat.num_exits"],
                        "architecture": opts["threat.architecture"]},
             "server_compute_median_s": to_jsonable(float(np.median(compute)))}
    path = save_stolen(out, record, extra)
    print(f"{name}: {oracle.queries_used} queries to {oracle.url}; stolen strategy "
          f"{stolen.strategy.to_json()}")
    print(f"stolen model: {path.parent / 'model.pt'} + {path}")
    return 0
