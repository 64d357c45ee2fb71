"""Grid expansion: a :class:`RunSpec` + registry -> validated :class:`CellSpec` list.

Every name and parameter is checked here, before any work: unknown names list what is
available, each component is built with its parameters and ``validate()``-d against
its declared constraints (names of policies, estimators and architectures against the
registry), timing parameters are checked, every victim's dataset must be present, and
parameters given for a component outside the grid are an error (likely a typo).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import warnings
from dataclasses import replace
from typing import Any

from harness.cell.pool import check_pool, check_pool_name, resolve_pool
from harness.cell.spec import MODELLED_TIMINGS, CellSpec, ComponentSpec
from harness.components import build_component
from harness.errors import ConfigError, DatasetError
from harness.io.provenance import package_versions
from harness.io.secret import secret_mode
from harness.plugins.registry import Registry
from harness.plugins.source import core_source_digest
from harness.run.config import RunSpec
from harness.serving.devices import resolve_device
from harness.stages import PROTOCOL_VERSION
from harness.timing.models import MODELLED

STACK = "stack"
"""The registered defense that runs ``defenses=a+b`` (``defenses/stack.py``)."""
STACK_SEPARATOR = "+"


def config_hash(cell: CellSpec, registry: Registry) -> str:
    """sha256 of the canonical JSON of the cell, plugin versions and source digests,
    package versions, the protocol, the secret mode and the harness core's source digest."""
    plugins = {k: registry.get(k, getattr(cell, k).name).origin()
               for k in ("victim", "defense", "attack")}
    blob = json.dumps({"cell": cell.to_json(), "plugins": plugins,
                       "packages": package_versions(), "protocol": PROTOCOL_VERSION,
                       "secret_mode": secret_mode(), "core": core_source_digest()},
                      sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def members_of(name: str) -> tuple[str, ...]:
    """``a+b`` -> (a, b); a plain name -> (name,)."""
    return tuple(p.strip() for p in name.split(STACK_SEPARATOR))


def _resolve(kind: str, requested: tuple[str, ...], registry: Registry) -> tuple[str, ...]:
    if requested == ("all",):
        names = tuple(n for n in registry.names(kind) if not (kind == "defense" and n == STACK))
        if not names:
            raise ConfigError(f"no {kind} is registered; check `harness plugins`")
        return names
    for name in requested:
        members = members_of(name)
        if len(members) > 1:
            if kind != "defense" or not all(members):
                raise ConfigError(f"{kind}s={name!r}: only defenses stack with '+', as "
                                  "defenses=pad_bucket+rounding (no empty member)")
            registry.get("defense", STACK)
        for member in members:
            registry.get(kind, member)  # raises UnknownComponentError listing the available ones
    return requested


def _param_sets(kind: str, name: str, spec: RunSpec) -> list[tuple[dict[str, Any], str]]:
    """The parameters of ``name`` for every combination of its sweeps, with a label suffix."""
    base = spec.params_for(kind, name)
    sweeps = [(p, values) for k, n, p, values in spec.sweeps if k == kind and n == name]
    for param, _ in sweeps:
        if param in base:
            raise ConfigError(f"{kind}.{name}.{param} is both set and swept "
                              f"(sweep.{kind}.{name}.{param}); keep one")
    out = []
    for combo in itertools.product(*(values for _, values in sweeps)):
        chosen = dict(zip((p for p, _ in sweeps), combo, strict=True))
        suffix = ",".join(f"{p}={json.dumps(v)}" for p, v in chosen.items())
        out.append(({**base, **chosen}, f"[{suffix}]" if suffix else ""))
    return out


def _components(kind: str, name: str, spec: RunSpec, registry: Registry) -> list[ComponentSpec]:
    """One spec per parameter set of ``name`` (a ``+`` name is a defense stack)."""
    members = members_of(name)
    if len(members) == 1:
        return [component_spec(kind, name, params, registry, suffix=suffix)
                for params, suffix in _param_sets(kind, name, spec)]
    specs = []
    for combo in itertools.product(*(_param_sets(kind, m, spec) for m in members)):
        full = [{"name": m, "params": component_spec(kind, m, params, registry).params}
                for m, (params, _) in zip(members, combo, strict=True)]
        label = STACK_SEPARATOR.join(m + suffix for m, (_, suffix) in zip(members, combo,
                                                                         strict=True))
        specs.append(component_spec(kind, STACK, {"members": full}, registry, label=label))
    return specs


def refuse_untrusted_in_process(attacks: tuple[str, ...], defenses: tuple[str, ...],
                                registry: Registry) -> None:
    """``isolation=none`` runs every component in the evaluator: only trusted ones (a
    defense stack's members included), refused before any work."""
    named = [("attack", a) for a in attacks]
    named += [("defense", m) for d in defenses for m in members_of(d)]
    for kind, name in named:
        entry = registry.get(kind, name)
        if not entry.trusted:
            raise ConfigError(
                f"isolation=none runs plugin code in the evaluator, but {entry.label()} is "
                "not trusted; run it with isolation=process (the default), or name the "
                "plugin or its distribution in HARNESS_TRUSTED_PLUGINS")


def component_spec(kind: str, name: str, params: dict[str, Any], registry: Registry,
               suffix: str = "", label: str = "") -> ComponentSpec:
    """The validated spec with full parameters; named ``label`` (else the component's own
    :meth:`label_for`) plus the sweep ``suffix``."""
    entry = registry.get(kind, name)
    try:
        obj = build_component(entry.cls, params)
        obj.validate(registry)
        full = obj.get_params()
        params_json = json.dumps(full, sort_keys=True, allow_nan=False)
        label = str(label or entry.cls.label_for(full)) + suffix
    except ConfigError as exc:
        raise ConfigError(f"{exc} (plugin {entry.plugin}, {entry.distribution} "
                          f"{entry.version})") from None
    except Exception as exc:  # a plugin's __init__ or validate() itself failed
        raise ConfigError(f"{entry.label()} rejected parameters {params}: "
                          f"{type(exc).__name__}: {exc}") from exc
    return ComponentSpec(kind, name, params_json, label)


def _warn_unregistered_families(victims: tuple[str, ...], registry: Registry) -> None:
    """A victim whose family is no registered architecture leaves attacks without a default."""
    known = set(registry.names("architecture"))
    for name in victims:
        entry = registry.get("victim", name)
        family = getattr(entry.cls, "family", "")
        if family not in known:
            warnings.warn(f"{entry.label()} has family {family!r}, which is not a registered "
                          "architecture; attacks that build the victim's family need "
                          "attack.NAME.architecture=... "
                          f"(registered: {', '.join(sorted(known)) or 'none'}), or register it "
                          "with harness_register_architectures", UserWarning, stacklevel=3)


def check_timing(spec: RunSpec) -> None:
    """Build the modelled timing from ``timing.PARAM`` values (raises ConfigError)."""
    timing = spec.settings.timing
    if timing not in MODELLED_TIMINGS:
        return
    model = MODELLED[timing]
    params = spec.settings.timing_params
    valid = sorted(model.CONSTRAINTS)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(f"unknown timing parameter(s) {unknown} for timing={timing}; "
                          f"valid: {', '.join(f'timing.{v}' for v in valid)}")
    model(**params)


def _check_dataset(registry: Registry, victim: str, data_root) -> None:
    entry = registry.get("victim", victim)
    dataset = entry.cls.dataset
    try:
        source = registry.get("dataset", dataset)
    except ConfigError as exc:
        raise ConfigError(f"{entry.label()} needs {exc}") from None
    source.cls().check_available(data_root)


def available_victims(spec: RunSpec, registry: Registry) -> tuple[tuple[str, ...], dict[str, str]]:
    """Victims to run and, for ``victims=all``, those skipped because their data is absent
    or because ``pool=`` does not fit them (another input shape or range).

    A victim named explicitly whose dataset is absent, or that the pool does not fit,
    is an error before any work.
    """
    names = _resolve("victim", spec.victims, registry)
    pool = spec.settings.threat.pool
    check_pool_name(pool, registry)  # unknown names list the datasets
    if spec.victims != ("all",):
        for name in names:
            _check_dataset(registry, name, spec.data_root)
            check_pool(registry, pool, name, spec.data_root)
        return names, {}
    keep, skipped = [], {}
    for name in names:
        try:
            _check_dataset(registry, name, spec.data_root)
        except DatasetError as exc:
            skipped[name] = str(exc).split(";")[0]
            continue
        try:
            check_pool(registry, pool, name, spec.data_root)
        except (ConfigError, DatasetError) as exc:
            skipped[name] = str(exc).split(";")[0]
            continue
        keep.append(name)
    if not keep:
        raise ConfigError("victims=all: no victim has its dataset present; "
                          + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return tuple(keep), skipped


def expand_grid(spec: RunSpec, registry: Registry, profile_hash: str | None = None,
                victims: tuple[str, ...] | None = None) -> list[CellSpec]:
    """All cells victim x defense x attack x seed, in a stable order."""
    chosen = {
        "victim": victims if victims is not None else available_victims(spec, registry)[0],
        "defense": _resolve("defense", spec.defenses, registry),
        "attack": _resolve("attack", spec.attacks, registry),
    }
    for kind, name, param, *_ in (*spec.component_params, *spec.sweeps):
        in_grid = {m for n in chosen[kind] for m in members_of(n)}
        if name not in in_grid:
            registry.get(kind, name)
            raise ConfigError(f"{kind}.{name}.{param} is set but {kind} {name!r} is not in this "
                              f"grid ({', '.join(chosen[kind])}); add it or drop the parameter")
    check_timing(spec)
    if spec.settings.device == "cuda":
        resolve_device("cuda")  # no visible GPU: refused here, before any work
    registry.get("backend", spec.settings.backend)  # unknown names list the registered backends
    _warn_unregistered_families(chosen["victim"], registry)
    comps = {kind: [c for n in names for c in _components(kind, n, spec, registry)]
             for kind, names in chosen.items()}
    base = replace(spec.settings, profile_hash=profile_hash)
    settings = {v.name: replace(base, threat=replace(base.threat, pool=resolve_pool(
        base.threat.pool, registry.get("victim", v.name).cls.dataset))) for v in comps["victim"]}
    if spec.settings.isolation == "none":
        refuse_untrusted_in_process(chosen["attack"], chosen["defense"], registry)
    return [CellSpec(victim=v, defense=d, attack=a, seed=seed, settings=settings[v.name])
            for v in comps["victim"] for d in comps["defense"] for a in comps["attack"]
            for seed in spec.seeds]
