"""``harness serve KEY=VALUE ... --host H --port N``: serve one defended victim over HTTP.

Keys: ``victim=`` and ``defense=`` (one name each), ``budget=`` (per client),
``output=``, ``timing=``, ``backend=``, ``device=``, ``seed=``, ``repeats=``,
``profile=``, ``cache_dir=``, ``data_root=``, and ``victim.NAME.PARAM=``,
``defense.NAME.PARAM=``, ``timing.PARAM=``. They are checked by the same code as
``harness run`` (same messages), before the victim is trained or loaded.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import uvicorn

from harness.cell.server import Server, Stream
from harness.cell.spec import CellEnvironment, CellSpec
from harness.errors import ConfigError
from harness.io.results import check_out_dir
from harness.plugins.registry import load_registry
from harness.run.config import parse_overrides, split_override
from harness.run.grid import expand_grid
from harness.serving.devices import resolve_device
from harness.serving.http.app import Health, ServeLimits, ServeTarget, make_app
from harness.serving.http.background import uvicorn_options
from harness.serving.http.clients import ApiKeys
from harness.serving.oracle import Oracle

SINGLE = {"victim": "victims", "defense": "defenses"}
"""Keys that name one component here but a list in ``harness run``."""
PASSED = ("budget", "output", "timing", "backend", "device", "repeats", "profile", "cache_dir",
          "data_root")
PREFIXES = ("victim.", "defense.", "timing.")
KEYS = (*SINGLE, *PASSED, "seed")


@dataclass(frozen=True)
class ServeOptions:
    """Where and how to listen, besides what is served."""

    host: str = "127.0.0.1"
    port: int = 8000
    limits: ServeLimits = field(default_factory=ServeLimits)
    pace: bool = True
    log_level: str = "warning"
    api_keys: ApiKeys | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeOptions:
        """The options of ``harness serve``'s command line."""
        limits = ServeLimits(max_body_bytes=args.max_body_bytes,
                             max_json_bytes=args.max_json_bytes, max_batch=args.max_batch,
                             rate=args.rate, burst=args.burst, max_clients=args.max_clients,
                             idle_client_s=args.idle_client_s,
                             new_client_rate=args.new_client_rate,
                             new_client_burst=args.new_client_burst,
                             header_timeout_s=args.header_timeout_s,
                             body_timeout_s=args.body_timeout_s)
        keys = ApiKeys.load(args.api_keys) if args.api_keys is not None else None
        return cls(host=args.host, port=args.port, limits=limits, pace=not args.no_pace,
                   api_keys=keys)


def run_overrides(overrides: list[str]) -> list[str]:
    """``harness serve`` keys as ``harness run`` keys (one grid cell, any attack)."""
    out = {"victims": "victims=digits_cnn", "defenses": "defenses=none", "attacks": "attacks=all"}
    for text in overrides:
        key, value = split_override(text)
        if key in SINGLE:
            if "," in value or value.startswith("[") or value == "all":
                raise ConfigError(f"serve: {key}={value!r} must name one registered {key} "
                                  f"(harness list {SINGLE[key]})")
            out[SINGLE[key]] = f"{SINGLE[key]}={value}"
        elif key == "seed":
            out["seeds"] = f"seeds={value}"
        elif key in PASSED or key.startswith(PREFIXES):
            out[key] = text
        else:
            raise ConfigError(f"serve: unknown key {key!r}; valid keys: {', '.join(KEYS)}, "
                              "victim.NAME.PARAM, defense.NAME.PARAM, timing.PARAM")
    return list(out.values())


def build_server(overrides: list[str], strict: bool) -> tuple[Server, CellSpec]:
    """Validate every key, then build the victim's server (trained or loaded from the cache)."""
    spec = parse_overrides(run_overrides(overrides))
    registry = load_registry(strict=strict, untrusted="import")  # the operator's defense
    cell = expand_grid(spec, registry)[0]
    check_out_dir(spec.cache_dir, key="cache_dir")
    env = CellEnvironment(cache_dir=spec.cache_dir, data_root=spec.data_root,
                          profile_path=spec.profile)
    return Server.build(cell, registry, env, resolve_device(spec.settings.device)), cell


def serve_target(server: Server, cell: CellSpec, pace: bool = True) -> ServeTarget:
    """What the app serves: a fresh defended endpoint and oracle per client, the health record."""
    data, settings = server.victim.data, cell.settings

    def new_oracle(client_id: str) -> Oracle:
        endpoint = server.endpoint(Stream.ATTACK_DEFENSE, Stream.ATTACK_TIMING,
                                   client_id=client_id)
        return Oracle(endpoint, settings.budget, settings.output, data.input_shape,
                      data.input_range)

    health = Health(victim=cell.victim.name, input_shape=tuple(data.input_shape),
                    num_classes=data.num_classes, input_range=tuple(data.input_range),
                    output=settings.output, budget=settings.budget)
    return ServeTarget(health, new_oracle, measures=server.timing.measures, pace=pace)


def build_target(overrides: list[str], strict: bool, pace: bool = True) -> ServeTarget:
    """Validate every key, build the server, and wrap it for the app."""
    return serve_target(*build_server(overrides, strict), pace=pace)


def serve_command(args: argparse.Namespace, strict: bool) -> int:
    """Build the target (all checks first), then serve it until interrupted."""
    options = ServeOptions.from_args(args)
    if not 0 <= options.port <= 65535:
        raise ConfigError(f"serve: --port {options.port} must be in 0..65535")
    target = build_target(args.overrides, strict, options.pace)
    app = make_app(target, options.limits, options.api_keys)
    h = target.health
    print(f"serving {h.victim} ({h.output}, budget {h.budget} per client) on "
          f"http://{options.host}:{options.port}  (GET /health, POST /query)", flush=True)
    uvicorn.run(app, host=options.host, port=options.port, log_level=options.log_level,
                **uvicorn_options(app))
    return 0
