"""The component registry: every registered class by kind and name, with its origin.

Built from a plugin manager by calling each registration hook once per plugin, so a
component's plugin and distribution are known (for errors, results and ``harness list``).
A plugin whose registration hook raises, or that registers something that is not a
component, is skipped whole (every component it registered is dropped) with a warning
naming it, unless the manager is strict; a name registered twice is always an error
naming both plugins.
"""

from __future__ import annotations

import types
import warnings
from dataclasses import dataclass
from typing import Any

from harness.components import validate_name
from harness.errors import DuplicateComponentError, PluginError, UnknownComponentError
from harness.plugins.hosted import HostedDescription, HostLink, is_hosted, stand_in
from harness.plugins.manager import HarnessPluginManager, HarnessPluginWarning, make_plugin_manager
from harness.plugins.porting import protocol_problems
from harness.plugins.source import component_source_digest
from harness.protocol import Architecture, Attack, DatasetSource, ExitEstimator, ServingBackend, Victim
from harness.stages import PROTOCOL_VERSION, STAGES, Defense, declared_stages
from harness.strategy import ExitPolicy

KINDS: dict[str, tuple[str, type]] = {
    "dataset": ("harness_register_datasets", DatasetSource),
    "victim": ("harness_register_victims", Victim),
    "attack": ("harness_register_attacks", Attack),
    "defense": ("harness_register_defenses", Defense),
    "exit_estimator": ("harness_register_exit_estimators", ExitEstimator),
    "exit_policy": ("harness_register_exit_policies", ExitPolicy),
    "backend": ("harness_register_backends", ServingBackend),
    "architecture": ("harness_register_architectures", Architecture),
}


@dataclass(frozen=True)
class Registered:
    """A registered component class and the plugin that registered it."""

    kind: str
    name: str
    cls: type
    plugin: str
    distribution: str
    version: str
    plugin_module: str = ""
    """The module the registering plugin object lives in (its source enters the digest)."""

    def label(self, display: str | None = None) -> str:
        """How messages name the component: ``defense 'pad' (plugin p, dist 1.0)``;
        ``display`` replaces the name (a stack's members, a sweep's values)."""
        return (f"{self.kind} {display or self.name!r} (plugin {self.plugin}, "
                f"{self.distribution} {self.version})")

    def origin(self) -> dict[str, str]:
        return {"plugin": self.plugin, "distribution": self.distribution, "version": self.version,
                "source_digest": self.source_digest()}

    def source_digest(self) -> str:
        """sha256 of the component's package source (:mod:`harness.plugins.source`); for
        an untrusted plugin's component, as its confined plugin host computed it."""
        if is_hosted(self.cls):
            return self.cls.hosted.source_digest  # type: ignore[attr-defined]
        return component_source_digest(self.cls, self.plugin_module or None)

    def stages(self) -> list[str]:
        """A defense's declared stages (for an untrusted plugin's, as its host described
        them: data for display, never for grading); [] for other kinds."""
        if self.kind != "defense":
            return []
        if is_hosted(self.cls):
            raw = self.cls.hosted.traits.get("stages", [])  # type: ignore[attr-defined]
            if not isinstance(raw, list):
                return []
            return [s for s in STAGES if s in raw]  # known names, once each, in stage order
        return list(declared_stages(self.cls))

    @property
    def trusted(self) -> bool:
        """Is this the code itself (built-in or trusted), not a stand-in for a hosted one?"""
        return not is_hosted(self.cls)


class Registry:
    """Read-only lookup of components by kind and name."""

    def __init__(self, entries: dict[str, dict[str, Registered]]) -> None:
        self._entries = entries

    @classmethod
    def from_manager(cls, pm: HarnessPluginManager) -> Registry:
        staged: dict[str, list[Registered]] = {}
        failed: dict[str, str] = {}
        for kind, (hook_name, base) in KINDS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                plugin = impl.plugin_name
                module = _module_name(impl.plugin)
                if plugin in failed:
                    continue
                dist, version = pm.distribution_of(plugin)
                where = f"plugin {plugin!r} (distribution {dist})"
                found: list[Registered] = []

                def register(component: Any, *, _kind=kind, _base=base, _where=where,
                             _plugin=plugin, _dist=dist, _version=version, _found=found,
                             _module=module) -> None:
                    if not (isinstance(component, type) and issubclass(component, _base)):
                        raise PluginError(
                            f"{_where} registered {component!r} as a {_kind}, but it is not a "
                            f"subclass of {_base.__module__}.{_base.__qualname__}")
                    name = validate_name(getattr(component, "name", None), _where)
                    problems = protocol_problems(component)
                    if problems:
                        raise PluginError(
                            f"{_where} registered {_kind} {name!r}, written for an older "
                            f"protocol (this harness speaks protocol {PROTOCOL_VERSION}): "
                            + "; ".join(problems))
                    _found.append(Registered(_kind, name, component, _plugin, _dist, _version,
                                              _module))

                kwargs = {"register": register}
                try:
                    impl.function(*[kwargs[a] for a in impl.argnames])
                except PluginError as exc:
                    failed[plugin] = str(exc)
                    continue
                except Exception as exc:
                    failed[plugin] = f"{where}: {hook_name} raised {type(exc).__name__}: {exc}"
                    continue
                staged.setdefault(plugin, []).extend(found)
        for plugin, reason in failed.items():
            staged.pop(plugin, None)
            message = (f"{reason}; the plugin was skipped. Fix or uninstall it, or set "
                       f"HARNESS_DISABLE_PLUGINS={plugin}")
            if getattr(pm, "strict", False):
                raise PluginError(message)
            warnings.warn(message, HarnessPluginWarning, stacklevel=2)
        entries: dict[str, dict[str, Registered]] = {k: {} for k in KINDS}
        for found in staged.values():
            for item in found:
                _refuse_duplicate(entries, item)
                entries[item.kind][item.name] = item
        return cls(entries)

    def with_hosted(self, catalog: list[HostedDescription], link: HostLink) -> Registry:
        """This registry plus a stand-in (:mod:`harness.plugins.hosted`) for every
        component an untrusted plugin registered, as its plugin host described them."""
        entries = {kind: dict(found) for kind, found in self._entries.items()}
        for item in catalog:
            _refuse_duplicate(entries, item)
            entries[item.kind][item.name] = Registered(
                item.kind, item.name, stand_in(item, link), item.plugin, item.distribution,
                item.version)
        return Registry(entries)

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str) -> list[Registered]:
        return [self._entries[kind][n] for n in self.names(kind)]

    def get(self, kind: str, name: str) -> Registered:
        try:
            return self._entries[kind][name]
        except KeyError:
            available = ", ".join(self.names(kind)) or "none"
            raise UnknownComponentError(
                f"unknown {kind} {name!r}; available: {available}. "
                f"Run `harness list` to see every component and its plugin") from None

    def policy(self, name: str) -> ExitPolicy:
        """An exit-policy instance by name."""
        return self.get("exit_policy", name).cls()


def _refuse_duplicate(entries: dict[str, dict[str, Registered]],
                      item: Registered | HostedDescription) -> None:
    """A name registered twice is an error naming both plugins."""
    known = entries[item.kind].get(item.name)
    if known is not None:
        raise DuplicateComponentError(
            f"{item.kind} name {item.name!r} is registered twice: by plugin {known.plugin!r} "
            f"({known.distribution}) and by plugin {item.plugin!r} ({item.distribution}); "
            "rename one, or disable a plugin with HARNESS_DISABLE_PLUGINS")


def load_registry(*, strict: bool = False, load_entrypoints: bool = True,
                  extra_plugins: tuple[Any, ...] = (), untrusted: str = "hosted") -> Registry:
    """The registry of a fresh plugin manager (:func:`~harness.plugins.manager.
    make_plugin_manager`): the built-ins, the trusted plugins, and the others as
    ``untrusted`` says (by default described by a confined plugin host, never imported)."""
    return Registry.from_manager(make_plugin_manager(
        strict=strict, load_entrypoints=load_entrypoints, extra_plugins=extra_plugins,
        untrusted=untrusted))


def _module_name(plugin: Any) -> str:
    """The module a plugin object was defined in ('' when unknown)."""
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    if isinstance(plugin, type):
        return plugin.__module__
    return str(getattr(type(plugin), "__module__", "") or "")
