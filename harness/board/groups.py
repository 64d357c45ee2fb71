"""Exact leaderboard groups: everything that determines a result except the seed.

A group key is a cell's recorded spec (``result["cell"]``) without its seed: every
component with its label and parameters, the budget, output mode, timing (mode,
parameters, profile hash), backend, repeats, threat model, isolation (with the level of
kernel confinement its workers had, where recorded), the secret mode (``folder``,
``secret`` or ``public``) and transport, with
the requested device replaced by the device class the cell actually ran on (``cpu``, or
``cuda`` with the GPU's name). Two results share a group only when all of it is equal, so
a parameter sweep, another budget or another timing mode is its own row. Where rows share
their component labels, :func:`variants` names the fields that tell them apart.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any

from harness.timing.deployments import DEFAULT_DEPLOYMENT

KINDS = ("victim", "defense", "attack")
GRANTED = {"num_exits": "granted", "architecture": "granted", "pool": "same"}
"""The threat model of a cell that does not record one (written before it was a grid key;
``pool`` is recorded only when it is not ``same``)."""
SCENARIO_EXCLUDES = ("defense", "attack")
"""A ranking scenario is a group key without these: one victim under one protocol."""


def threat_of(result: dict[str, Any]) -> dict[str, str]:
    """A result's threat settings; granted/granted, pool ``same``, for results that predate them."""
    recorded = (result.get("cell") or {}).get("threat") or {}
    return {k: str(recorded.get(k, v)) for k, v in GRANTED.items()}


def device_class(result: dict[str, Any]) -> str:
    """Where the cell ran: ``cpu``, or ``cuda (<gpu name>)``."""
    device = str(result.get("device") or "cpu")
    if device.startswith("cuda"):
        gpu = (result.get("machine") or {}).get("gpu")
        return f"cuda ({gpu})" if gpu else "cuda"
    return device


def group_key(result: dict[str, Any]) -> dict[str, Any]:
    """The result's exact group key (see the module docstring)."""
    cell = dict(result.get("cell") or {})
    cell.pop("seed", None)
    for kind in KINDS:
        comp = result["components"][kind]
        cell[kind] = {"name": comp["name"], "label": str(comp.get("label") or comp["name"]),
                      "params": comp.get("params", {})}
    cell["device"] = device_class(result)
    cell["threat"] = threat_of(result)
    cell.setdefault("isolation", "none")
    level = ((result.get("diagnostics") or {}).get("isolation") or {}).get("level")
    if level is not None:  # how confined its workers were (results before it record none)
        cell["isolation_level"] = str(level)
    secret = ((result.get("diagnostics") or {}).get("isolation") or {}).get("secret")
    if secret is not None:  # public-mode victims can be rebuilt by any plugin: kept apart
        cell["secret"] = str(secret)
    return cell


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def key_id(key: dict[str, Any]) -> str:
    """A short stable id of a key (16 hex digits of its sha256)."""
    return hashlib.sha256(canonical(key).encode()).hexdigest()[:16]


def scenario_of(key: dict[str, Any]) -> dict[str, Any]:
    """The group key without the defense and the attack."""
    return {k: v for k, v in key.items() if k not in SCENARIO_EXCLUDES}


def unranked_because(key: dict[str, Any]) -> str | None:
    """Why a group is kept out of the rankings (None: it is ranked).

    Only the default channel is ranked: an isolated cell (``isolation=process``, the
    in-process transport, no network profile) under ``timing=realistic`` with the default
    deployment and none of its parameters overridden. Everything else - another deployment,
    ``timing.*`` overrides, ``analytic``, ``replay``, ``live``, added network noise - is a
    group of its own, so a defense is never credited for noise the evaluator added."""
    timing = key.get("timing") or {}
    params = dict(timing.get("params") or {})
    reasons = []
    if key.get("isolation", "none") == "none":
        reasons.append("not isolated")
    if key.get("transport", "inproc") != "inproc":
        reasons.append(f"transport={key['transport']}")
    if key.get("network", "none") != "none":
        reasons.append(f"timing.network={key['network']}")
    if timing.get("mode") != "realistic":
        reasons.append(f"timing={timing.get('mode')}")
    else:
        deployment = params.pop("deployment", None)
        if deployment != DEFAULT_DEPLOYMENT:
            reasons.append(f"timing.deployment={deployment or 'unrecorded'}")
        reasons += [f"timing.{k}={v}" for k, v in sorted(params.items())]
    return "; ".join(reasons) or None


def component_id(key: dict[str, Any], kind: str) -> str:
    """A component's identity within a key: its label and parameters."""
    comp = key[kind]
    return canonical({"label": comp["label"], "params": comp["params"]})


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and scalars are leaves)."""
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def variants(keys: list[dict[str, Any]], fields_of: Any = None) -> list[str]:
    """For each key, the fields (``attack.params.epochs=20``, ``budget=300``) in which it
    differs from the other keys with the same victim, defense and attack labels; '' when
    its labels are unique. ``fields_of`` maps a key to what is compared (default: all)."""
    fields_of = fields_of or (lambda k: k)
    flat = [flatten(fields_of(key)) for key in keys]
    labels = [tuple(k[kind]["label"] for kind in KINDS if kind in k) for k in keys]
    by_label: dict[tuple, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        by_label[lab].append(i)
    out = [""] * len(keys)
    for members in by_label.values():
        if len(members) < 2:
            continue
        names = sorted({f for i in members for f in flat[i]})
        differ = [f for f in names if len({_short(flat[i].get(f)) for i in members}) > 1]
        for i in members:
            out[i] = ", ".join(f"{f.replace('.params.', '.')}={_short(flat[i].get(f))}"
                               for f in differ)
    return out
