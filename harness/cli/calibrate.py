"""``harness calibrate KEY=VALUE ...``: record a live latency profile of a victim.

Keys: ``victim=`` (default digits_cnn), ``backend=torch|onnx``, ``device=cpu|cuda|auto``,
``samples=N`` per exit (default 200), ``repeats=R``, ``seed=S``, ``out=PATH`` (default:
``<cache_dir>/profiles/<victim>-<backend>-<device>-<weights12>.json``), ``cache_dir=``,
``data_root=``, and ``victim.NAME.PARAM=VALUE`` / ``backend.PARAM=VALUE``.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.cell.driver import prepare_victim
from harness.cell.spec import CellEnvironment
from harness.components import build_component
from harness.errors import ConfigError, OutputDirError
from harness.io.results import check_out_dir
from harness.io.schema import MAX_SEED
from harness.plugins.registry import load_registry
from harness.run.config import parse_overrides, parse_value, split_override
from harness.run.grid import expand_grid
from harness.serving.devices import resolve_device
from harness.timing.recording import record_profile

KEYS = ("victim", "backend", "device", "samples", "repeats", "seed", "out", "cache_dir",
        "data_root")


def check_profile_path(out: Path) -> None:
    """Fail before measuring when ``out=`` cannot take the profile file."""
    if out.is_dir():
        raise OutputDirError(f"calibrate: out={out} is a directory; give a file path for the "
                             "profile, e.g. out=profiles/digits.json")
    check_out_dir(out.parent if str(out.parent) else Path("."), key="the folder of out")


def calibrate_command(overrides: list[str], strict: bool) -> int:
    opts: dict[str, str] = {"victim": "digits_cnn", "backend": "torch", "device": "cpu",
                            "samples": "200", "repeats": "1", "seed": "0"}
    victim_params: list[str] = []
    backend_params: dict[str, object] = {}
    for text in overrides:
        key, value = split_override(text)
        if key in KEYS:
            opts[key] = value
        elif key.startswith("victim."):
            victim_params.append(text)
        elif key.startswith("backend.") and key.count(".") == 1:
            backend_params[key.split(".", 1)[1]] = parse_value(value)
        else:
            raise ConfigError(f"calibrate: unknown key {key!r}; valid keys: {', '.join(KEYS)}, "
                              "victim.NAME.PARAM, backend.PARAM")
    limits = {"samples": (1, 100_000), "repeats": (1, 1000), "seed": (0, MAX_SEED)}
    for key, (low, high) in limits.items():
        if not opts[key].isdigit() or not low <= int(opts[key]) <= high:
            raise ConfigError(f"calibrate: {key}={opts[key]!r} must be an integer in "
                              f"{low}..{high:,}")
    run_keys = [f"victims={opts['victim']}", "attacks=all", "defenses=all",
                f"backend={opts['backend']}", f"device={opts['device']}", *victim_params]
    run_keys += [f"{k}={opts[k]}" for k in ("cache_dir", "data_root") if k in opts]
    spec = parse_overrides(run_keys)
    registry = load_registry(strict=strict, untrusted="import")  # the user's victim
    cell = expand_grid(spec, registry)[0]
    backend_name = spec.settings.backend
    device = resolve_device(spec.settings.device)
    backend = build_component(registry.get("backend", backend_name).cls, backend_params)
    backend.validate(registry)
    out = Path(os.path.expanduser(opts["out"])) if "out" in opts else None
    if out is not None:
        check_profile_path(out)
    check_out_dir(spec.cache_dir, key="cache_dir")
    env = CellEnvironment(cache_dir=spec.cache_dir, data_root=spec.data_root)
    victim = prepare_victim(registry, cell, env, device)
    served = backend.load(victim, device, spec.cache_dir)
    profile = record_profile(served, victim, samples_per_exit=int(opts["samples"]),
                        repeats=int(opts["repeats"]), seed=int(opts["seed"]),
                        backend=backend_name, device=device)
    default = (spec.cache_dir / "profiles"
               / f"{victim.name}-{backend_name}-{device}-{victim.weights_hash[:12]}.json")
    try:
        path = profile.save(out or default)
    except OSError as exc:
        raise OutputDirError(f"calibrate: cannot write the profile to {out or default} "
                             f"({exc.strerror or exc}); choose a writable out=PATH") from None
    print(f"{'exit':>4} {'p5 us':>10} {'median us':>10} {'p95 us':>10}")
    for k, (p5, p50, p95) in enumerate(profile.quantiles()):
        print(f"{k:>4} {p5 * 1e6:10.1f} {p50 * 1e6:10.1f} {p95 * 1e6:10.1f}")
    print(f"profile {profile.hash[:12]} written to {path}")
    print(f"replay it with: harness run victims={victim.name} timing=replay profile={path}")
    return 0
