"""The plugin host: a confined worker that imports the untrusted plugins for the evaluator.

The evaluator imports the harness, the built-ins and the plugins the user trusts
(``HARNESS_TRUSTED_PLUGINS``), never another plugin's module. What it needs of those
(names, parameters, defaults, labels, validation, origin) it asks the plugin host: a
worker confined like the cell workers (:mod:`harness.isolation.confine`, no network, no
``out=``, no cache) that imports every plugin, describes each untrusted component
(:class:`~harness.plugins.hosted.HostedDescription`) and then answers ``resolve``
requests by running the plugin's own ``__init__``, ``get_params``, ``label_for`` and
``validate``. :func:`evaluator_registry` is the evaluator's registry: the trusted
components themselves, the others as stand-ins (:mod:`harness.plugins.hosted`). The
host is started only when an untrusted plugin is installed. See docs/design.md section 10.
"""

from __future__ import annotations

import json
import traceback
import warnings
from pathlib import Path
from typing import Any

from harness.components import build_component, parameter_lines
from harness.errors import ConfigError, HarnessError, PluginError
from harness.isolation.confine import Confinement, ConfinementReport, run_confined
from harness.isolation.sandbox import PluginSetting, start_confined, use_scratch
from harness.isolation.wire import Message, WireError, receive, send
from harness.plugins.hosted import USABLE_KINDS, HostedDescription, Resolution, params_key
from harness.plugins.manager import HarnessPluginManager, HarnessPluginWarning
from harness.plugins.registry import KINDS, Registered, Registry, load_registry
from harness.stages import declared_stages

HOST_MEMORY = 4 * 2**30


def _describe(entry: Registered) -> HostedDescription:
    cls = entry.cls
    defaults = cls.default_params() if hasattr(cls, "default_params") else {}
    return HostedDescription(
        kind=entry.kind, name=entry.name, plugin=entry.plugin,
        distribution=entry.distribution, version=entry.version,
        doc=str(cls.__doc__ or ""),
        param_names=tuple(cls.param_names()) if hasattr(cls, "param_names") else (),
        defaults={k: v for k, v in defaults.items() if _jsonable(v)},
        reference=bool(getattr(cls, "reference", False)),
        source_digest=entry.source_digest(), parameter_lines=tuple(parameter_lines(cls)),
        traits=_traits(entry))


def _traits(entry: Registered) -> dict[str, Any]:
    if entry.kind == "defense":  # for display only (which latency panels a board draws)
        return {"stages": list(declared_stages(entry.cls))}
    if entry.kind != "exit_policy":
        return {}
    try:
        return {"trainable": bool(entry.cls().trainable())}
    except Exception:
        return {"trainable": False}


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _resolve(registry: Registry, meta: dict[str, Any]) -> Message:
    entry = registry.get(str(meta["kind"]), str(meta["name"]))
    params = dict(meta.get("params") or {})
    if not hasattr(entry.cls, "param_names"):  # an exit policy: no parameters, no validate
        try:
            entry.cls()
        except Exception as exc:
            return Message("resolved", {"params": params, "label": entry.name, "construct_error":
                                        f"{entry.label()} cannot be constructed: "
                                        f"{type(exc).__name__}: {exc}"})
        return Message("resolved", {"params": {}, "label": entry.name, "validate_error": ""})
    try:
        obj = build_component(entry.cls, params)
        full = obj.get_params()
        label = str(entry.cls.label_for(full))
    except ConfigError as exc:
        return Message("resolved", {"params": params, "label": entry.name,
                                    "construct_error": str(exc)})
    except Exception as exc:  # the plugin's own __init__ refused them
        return Message("resolved", {"params": params, "label": entry.name, "construct_error":
                                    f"{entry.label()} rejected parameters {params}: "
                                    f"{type(exc).__name__}: {exc}"})
    try:
        obj.validate(registry)
        error = ""
    except ConfigError as exc:
        error = str(exc)
    except Exception as exc:
        error = f"{entry.label()}: validate() raised {type(exc).__name__}: {exc}"
    return Message("resolved", {"params": full, "label": label, "validate_error": error})


def host_worker(conn: Any, setting: PluginSetting, hosted: tuple[str, ...], strict: bool,
                confinement: Confinement, scratch: str) -> None:
    """Entry point of the plugin host process: confined before any plugin loads."""
    run_confined(confinement, host_main, conn, setting, hosted, strict, scratch)


def host_main(conn: Any, setting: PluginSetting, hosted: tuple[str, ...], strict: bool,
              scratch: str, report: ConfinementReport) -> None:
    """Import every plugin, describe the untrusted ones, answer until closed; the
    plugin warnings of the import go back to the evaluator, which shows them."""
    try:
        use_scratch(Path(scratch))
        setting.apply()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            registry = load_registry(untrusted="import", strict=strict)
        catalog = [_describe(e).to_json() for kind in KINDS for e in registry.entries(kind)
                   if e.plugin in hosted]
    except BaseException as exc:
        send(conn, Message("error", {"message": f"{exc}"[:4000], "type": type(exc).__name__,
                                     "traceback": traceback.format_exc()[-4000:]}))
        return
    notes = [str(w.message)[:2000] for w in caught
             if issubclass(w.category, HarnessPluginWarning)]
    send(conn, Message("catalog", {"catalog": catalog, "sandbox": report.to_json(),
                                   "warnings": notes}))
    while True:
        try:
            message = receive(conn, ("resolve", "close"))
        except (EOFError, OSError, WireError):
            return
        if message.kind == "close":
            return
        try:
            reply = _resolve(registry, message.meta)
        except Exception as exc:
            reply = Message("resolved", {"params": {}, "label": "", "construct_error":
                                         f"{type(exc).__name__}: {exc}"})
        send(conn, reply)


class PluginHost:
    """The evaluator's handle on a plugin host (a :class:`~harness.plugins.hosted.HostLink`)."""

    def __init__(self, hosted: list[str], protect: tuple[Path | None, ...] = (),
                 strict: bool = False) -> None:
        self._worker = start_confined(host_worker, (tuple(hosted), strict), protect,
                                      memory_bytes=HOST_MEMORY, cpu_seconds=600)
        self._conn, self._process = self._worker.conn, self._worker.process
        self._cache: dict[tuple[str, str, str], Resolution] = {}
        reply = self._receive(("catalog", "error"))
        if reply.kind == "error":
            self.close()
            message = str(reply.meta.get("message"))
            if reply.meta.get("type") in ("PluginError", "DuplicateComponentError"):
                raise PluginError(message)  # strict mode, or a name clash: the plugin's own
            raise PluginError(f"the plugin host could not load the untrusted plugins "
                              f"{', '.join(hosted)}: {message}")
        for note in reply.meta.get("warnings") or []:
            warnings.warn(str(note), HarnessPluginWarning, stacklevel=3)
        self.sandbox = dict(reply.meta.get("sandbox") or {})
        self.catalog = [HostedDescription.from_json(d) for d in reply.meta["catalog"]
                        if d.get("kind") in KINDS]

    def _receive(self, expected: tuple[str, ...]) -> Message:
        try:
            return receive(self._conn, expected)
        except (EOFError, OSError, WireError) as exc:
            raise HarnessError(f"the plugin host (which imports the untrusted plugins) "
                               f"died or misbehaved ({type(exc).__name__}: {exc}; exit code "
                               f"{self._process.exitcode})") from None

    def resolve(self, kind: str, name: str, params: dict[str, Any]) -> Resolution:
        key = (kind, name, params_key(params))
        if key not in self._cache:
            try:
                send(self._conn, Message("resolve", {"kind": kind, "name": name,
                                                     "params": params}))
            except (OSError, ValueError) as exc:
                raise HarnessError(f"the plugin host is gone ({exc})") from None
            meta = self._receive(("resolved",)).meta
            self._cache[key] = Resolution(dict(meta.get("params") or {}),
                                          str(meta.get("label") or name),
                                          str(meta.get("construct_error") or ""),
                                          str(meta.get("validate_error") or ""))
        return self._cache[key]

    def close(self) -> None:
        self._worker.stop(Message("close"))


def evaluator_registry(pm: HarnessPluginManager,
                       protect: tuple[Path | None, ...] = ()) -> Registry:
    """The evaluator's registry: built-ins and trusted plugins themselves, each untrusted
    plugin's usable components as stand-ins described by a plugin host (started only when
    ``pm`` left plugins to one)."""
    registry = Registry.from_manager(pm)
    if not pm.hosted:
        return registry
    host = PluginHost(list(pm.hosted), protect, strict=pm.strict)
    for item in host.catalog:
        if item.kind not in USABLE_KINDS:
            warnings.warn(
                f"plugin {item.plugin!r} ({item.distribution} {item.version}) registers "
                f"{item.kind} {item.name!r}, which runs in the evaluator, but the plugin is not "
                f"trusted, so it is left out; to use it, name the plugin or its distribution in "
                f"HARNESS_TRUSTED_PLUGINS (docs/design.md section 10)",
                HarnessPluginWarning, stacklevel=2)
    return registry.with_hosted([d for d in host.catalog if d.kind in USABLE_KINDS], host)
