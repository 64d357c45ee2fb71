"""Rebuild the :class:`CellSpec` a stored cell result was run from (for ``leaderboard verify``).

A result records its cell as :meth:`CellSpec.to_json` wrote it (``result["cell"]``) and
each component's label (``result["components"]``). :func:`rebuild_cell` turns that back
into the spec :func:`~harness.run.grid.expand_grid` would build today: every component is
looked up in the registry, built with its stored parameters, ``validate()``-d, and its
parameters are taken from ``get_params()`` and dumped as :func:`expand_grid` does
(``sort_keys``). So a component that gained a parameter since the cell ran, like one whose
code or version changed, yields another config hash: the cell is stale, not silently equal.

Keys a cell of an older harness lacks read as their defaults (``threat`` granted/granted,
``pool`` same, ``transport`` inproc, ``network`` none), as the runner writes them; a
missing ``isolation`` reads as ``process`` (the runner always writes it, so a cell without
it predates the key and its hash changes: stale). Anything that cannot be rebuilt (an
unregistered component, parameters the component now refuses, a missing replay profile)
raises :class:`CannotRebuild` with the reason, never a crash.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.cell.spec import CellSpec, ComponentSpec, Settings, ThreatModel
from harness.errors import ConfigError, HarnessError
from harness.io.provenance import package_versions
from harness.plugins.registry import Registry
from harness.plugins.source import core_source_digest
from harness.run.grid import component_spec
from harness.stages import PROTOCOL_VERSION
from harness.timing.profiles import LatencyProfile

KINDS = ("victim", "defense", "attack")


class CannotRebuild(HarnessError):
    """A stored cell cannot be rebuilt on this installation; the message says why."""


def _require(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise CannotRebuild(f"{where} has no {key!r}; the file is not a cell result of this "
                            "harness")
    return obj[key]


def rebuild_component(kind: str, stored: Mapping[str, Any], label: str,
                      registry: Registry) -> ComponentSpec:
    """The :class:`ComponentSpec` of a stored ``{"name", "params"}``, checked as the grid does."""
    name = _require(stored, "name", f"cell.{kind}")
    params = _require(stored, "params", f"cell.{kind}")
    if not isinstance(params, dict):
        raise CannotRebuild(f"cell.{kind}.params is {type(params).__name__}, expected an object")
    try:
        entry = registry.get(kind, name)
    except ConfigError as exc:  # UnknownComponentError lists the registered ones
        raise CannotRebuild(f"{kind} {name!r} is not registered here ({exc}); install the "
                            "plugin that provides it") from None
    try:  # the grid's own check, so the rebuilt params (and hash) match what it would build
        return component_spec(kind, name, params, registry, label=label or name)
    except ConfigError as exc:  # the component's own checks, or its __init__, refused them
        raise CannotRebuild(f"{entry.label()} refuses the stored parameters {params}: "
                            f"{exc}") from None


def rebuild_cell(result: Mapping[str, Any], registry: Registry) -> CellSpec:
    """The :class:`CellSpec` that produced ``result`` (raises :class:`CannotRebuild`)."""
    cell = _require(result, "cell", "the result")
    components = result.get("components") or {}
    specs = {kind: rebuild_component(kind, _require(cell, kind, "cell"),
                                     str((components.get(kind) or {}).get("label") or ""),
                                     registry)
             for kind in KINDS}
    timing = _require(cell, "timing", "cell")
    threat = cell.get("threat") or {}
    try:
        threat_model = ThreatModel(**threat)
    except (TypeError, ConfigError) as exc:
        raise CannotRebuild(f"cell.threat {threat} is not a threat model of this harness: "
                            f"{exc}") from None
    try:
        settings = Settings(
            budget=int(_require(cell, "budget", "cell")),
            output=str(_require(cell, "output", "cell")),
            timing=str(_require(timing, "mode", "cell.timing")),
            timing_params_json=json.dumps(timing.get("params") or {}, sort_keys=True),
            profile_hash=timing.get("profile_hash"), backend=str(_require(cell, "backend", "cell")),
            device=str(_require(cell, "device", "cell")),
            repeats=int(_require(cell, "repeats", "cell")), threat=threat_model,
            isolation=str(cell.get("isolation", "process")),
            transport=str(cell.get("transport", "inproc")), network=str(cell.get("network", "none")))
        return CellSpec(victim=specs["victim"], defense=specs["defense"], attack=specs["attack"],
                        seed=int(_require(cell, "seed", "cell")), settings=settings)
    except (TypeError, ValueError) as exc:  # ConfigError is a ValueError
        raise CannotRebuild(f"cell {dict(cell)} has a malformed field: {exc}") from None


def find_profile(profile_hash: str, places: Iterable[Path]) -> Path:
    """The latency profile file with ``profile_hash`` among ``places`` (files, or folders
    searched recursively for ``*.json``); raises :class:`CannotRebuild` naming where it looked."""
    looked = []
    for place in places:
        place = Path(place)
        looked.append(str(place))
        candidates = [place] if place.is_file() else sorted(
            p for p in place.rglob("*.json") if "cells" not in p.relative_to(place).parts)
        for path in candidates:  # cell results (under cells/) are never profiles
            try:
                if LatencyProfile.load(path).hash == profile_hash:
                    return path
            except (HarnessError, KeyError, TypeError, ValueError):
                continue  # not a profile (a leaderboard, a replica file, ...)
    raise CannotRebuild(f"timing=replay needs the latency profile {profile_hash[:12]}, which is "
                        f"in none of {', '.join(looked) or 'no place'}; pass its file or folder "
                        "as a profile place")


def _changed_keys(then: Mapping[str, Any], now: Mapping[str, Any], prefix: str) -> list[str]:
    """Dotted names of the keys whose values differ (one level into dicts)."""
    out = []
    for key in sorted(set(then) | set(now), key=str):
        a, b = then.get(key, None), now.get(key, None)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_keys(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def why_stale(result: Mapping[str, Any], cell: CellSpec, registry: Registry) -> str:
    """What differs between a result's recorded inputs and today's: the cell's fields (a
    component that gained a parameter, say), plugin versions, package versions, protocol.
    Anything else (a component's source digest) is hashed but not recorded in the result,
    so it is named as the remaining cause, beside an edit of the file."""
    causes = []
    cell_diff = _changed_keys(result.get("cell") or {}, cell.to_json(), "cell.")
    if cell_diff:
        causes.append("fields now read differently: " + ", ".join(cell_diff))
    components = result.get("components") or {}
    for kind in KINDS:
        then = components.get(kind) or {}
        now = registry.get(kind, getattr(cell, kind).name).origin()
        moved = [f"{k} {then.get(k)!r} -> {v!r}" for k, v in now.items() if then.get(k) != v]
        if moved:
            causes.append(f"{kind} {getattr(cell, kind).name}: " + ", ".join(moved))
    packages = _changed_keys(result.get("packages") or {}, package_versions(), "")
    if packages:
        causes.append("package versions: " + ", ".join(
            f"{p} {(result.get('packages') or {}).get(p)} -> {package_versions().get(p)}"
            for p in packages))
    if result.get("protocol_version") != PROTOCOL_VERSION:
        causes.append(f"protocol {result.get('protocol_version')} -> {PROTOCOL_VERSION}")
    core = core_source_digest()
    if result.get("core_digest") != core:
        causes.append(f"harness core source {str(result.get('core_digest') or 'unrecorded')[:12]}"
                      f" -> {core[:12]}")
    return "; ".join(causes) or ("no recorded input differs: a hashed input the result does "
                                 "not record changed (a component's source code, the "
                                 "config-hash recipe), or the file was edited after it was "
                                 "written")
