"""``harness serve KEY=VALUE ... --host H --port N``: serve one defended victim over HTTP.

Keys: ``victim=`` and ``defense=`` (one name each), ``budget=`` (per client),
``output=``, ``timing=``, ``backend=``, ``device=``, ``seed=``, ``repeats=``,
``profile=``, ``cache_dir=``, ``data_root=``, and ``victim.NAME.PARAM=``,
``defense.NAME.PARAM=``, ``timing.PARAM=``. They are checked by the same code as
``harness run`` (same messages), before the victim is trained or loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.errors import ConfigError
from harness.plugins.manager import make_plugin_manager
from harness.plugins.registry import Registry
from harness.run.config import parse_overrides, split_override
from harness.run.grid import CellSpec, expand_grid
from harness.run.results import check_out_dir
from harness.run.server import CellEnvironment, Server, Stream
from harness.serving.devices import resolve_device
from harness.serving.http.app import Health, ServeLimits, ServeTarget, make_app
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
    registry = Registry.from_manager(make_plugin_manager(strict=strict))
    cell = expand_grid(spec, registry)[0]
    check_out_dir(spec.cache_dir, key="cache_dir")
    env = CellEnvironment(cache_dir=spec.cache_dir, data_root=spec.data_root,
                          profile_path=spec.profile)
    return Server.build(cell, registry, env, resolve_device(spec.device)), cell


def serve_target(server: Server, cell: CellSpec, pace: bool = True) -> ServeTarget:
    """What the app serves: a fresh defended endpoint and oracle per client, the health record."""
    data = server.victim.data

    def new_oracle(client_id: str) -> Oracle:
        endpoint = server.endpoint(Stream.ATTACK_DEFENSE, Stream.ATTACK_TIMING,
                                   client_id=client_id)
        return Oracle(endpoint, cell.budget, cell.output, data.input_shape, data.input_range)

    health = Health(victim=cell.victim.name, input_shape=tuple(data.input_shape),
                    num_classes=data.num_classes, input_range=tuple(data.input_range),
                    output=cell.output, budget=cell.budget)
    return ServeTarget(health, new_oracle, measures=server.timing.measures, pace=pace)


def build_target(overrides: list[str], strict: bool, pace: bool = True) -> ServeTarget:
    """Validate every key, build the server, and wrap it for the app."""
    return serve_target(*build_server(overrides, strict), pace=pace)


def serve_command(overrides: list[str], options: ServeOptions, strict: bool) -> int:
    """Build the target (all checks first), then serve it until interrupted."""
    import uvicorn

    if not 0 <= options.port <= 65535:
        raise ConfigError(f"serve: --port {options.port} must be in 0..65535")
    target = build_target(overrides, strict, options.pace)
    app = make_app(target, options.limits)
    h = target.health
    print(f"serving {h.victim} ({h.output}, budget {h.budget} per client) on "
          f"http://{options.host}:{options.port}  (GET /health, POST /query)", flush=True)
    uvicorn.run(app, host=options.host, port=options.port, log_level=options.log_level,
                access_log=False, timeout_keep_alive=75, server_header=False)
    return 0
