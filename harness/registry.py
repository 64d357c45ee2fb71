"""The component registry: every registered class by kind and name, with its origin.

Built from a plugin manager by calling each registration hook once per plugin, so a
component's plugin and distribution are known (for errors, results and ``harness list``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.components import validate_name
from harness.errors import DuplicateComponentError, PluginError, UnknownComponentError
from harness.plugins import HarnessPluginManager
from harness.protocol import (
    Attack,
    DatasetSource,
    Defense,
    ExitEstimator,
    ServingBackend,
    Victim,
)
from harness.strategy import ExitPolicy

KINDS: dict[str, tuple[str, type]] = {
    "dataset": ("harness_register_datasets", DatasetSource),
    "victim": ("harness_register_victims", Victim),
    "attack": ("harness_register_attacks", Attack),
    "defense": ("harness_register_defenses", Defense),
    "exit_estimator": ("harness_register_exit_estimators", ExitEstimator),
    "exit_policy": ("harness_register_exit_policies", ExitPolicy),
    "backend": ("harness_register_backends", ServingBackend),
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

    def origin(self) -> dict[str, str]:
        return {"plugin": self.plugin, "distribution": self.distribution, "version": self.version}


class Registry:
    """Read-only lookup of components by kind and name."""

    def __init__(self, entries: dict[str, dict[str, Registered]]) -> None:
        self._entries = entries

    @classmethod
    def from_manager(cls, pm: HarnessPluginManager) -> Registry:
        entries: dict[str, dict[str, Registered]] = {k: {} for k in KINDS}
        for kind, (hook_name, base) in KINDS.items():
            hook = getattr(pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                plugin_name = impl.plugin_name
                dist, version = pm.distribution_of(plugin_name)

                def register(component: Any, *, _kind=kind, _base=base, _plugin=plugin_name,
                             _dist=dist, _version=version) -> None:
                    where = f"plugin {_plugin!r} (distribution {_dist})"
                    if not (isinstance(component, type) and issubclass(component, _base)):
                        raise PluginError(
                            f"{where} registered {component!r} as a {_kind}, but it is not a "
                            f"subclass of {_base.__module__}.{_base.__qualname__}")
                    name = validate_name(getattr(component, "name", None), where)
                    known = entries[_kind].get(name)
                    if known is not None:
                        raise DuplicateComponentError(
                            f"{_kind} name {name!r} is registered twice: by plugin "
                            f"{known.plugin!r} ({known.distribution}) and by plugin "
                            f"{_plugin!r} ({_dist}); rename one, or disable a plugin with "
                            f"HARNESS_DISABLE_PLUGINS")
                    entries[_kind][name] = Registered(_kind, name, component, _plugin, _dist,
                                                      _version)

                kwargs = {"register": register}
                impl.function(*[kwargs[a] for a in impl.argnames])
        return cls(entries)

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
