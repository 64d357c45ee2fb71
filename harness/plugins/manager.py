"""Plugin manager construction and the component registry built from it.

``make_plugin_manager()`` builds and returns a manager (there is no global one):
hookspecs, entry points of group ``harness`` (allow-list ``HARNESS_LOAD_PLUGINS``,
block-list ``HARNESS_DISABLE_PLUGINS``, both comma-separated entry-point names), then
the built-in plugin modules, then ``check_pending()``. A plugin that fails to import is
skipped with a warning naming it, its distribution and the error, unless ``strict``.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from harness import hookspecs
from harness.errors import PluginError
from harness.hookspecs import PROJECT_NAME
from harness.version import __version__

BUILTIN_PLUGINS = (
    "harness.plugins.builtins",
    "victims.plugin",
    "attacks.plugin",
    "defenses.plugin",
)
"""The only place where the framework names the built-in packages."""

DISTRIBUTION = "exitsteal-harness"

HOOK_NAMES = tuple(sorted(n for n in vars(hookspecs) if n.startswith("harness_")))


class HarnessPluginWarning(UserWarning):
    """A plugin was skipped; the message names it and says why."""


class HarnessPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers each plugin's distribution and version."""

    def __init__(self, strict: bool = False) -> None:
        super().__init__(PROJECT_NAME)
        self.strict = strict
        self.distributions: dict[str, tuple[str, str]] = {}

    def distribution_of(self, plugin_name: str) -> tuple[str, str]:
        return self.distributions.get(plugin_name, ("unknown", "unknown"))


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _unknown_hooks(pm: HarnessPluginManager, plugin: object) -> list[str]:
    """Hook implementations of ``plugin`` that match no hookspec (typos, other versions)."""
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or []
                  if caller.spec is None)


def trusted_plugins() -> set[str]:
    """Entry-point or distribution names the user trusts (``HARNESS_TRUSTED_PLUGINS``):
    their code may run unconfined, e.g. to build a victim (docs/design.md section 10)."""
    return _env_list("HARNESS_TRUSTED_PLUGINS") or set()


def _load_entry_points(pm: HarnessPluginManager, block: set[str], trusted_only: bool) -> None:
    allow = _env_list("HARNESS_LOAD_PLUGINS")
    trusted = trusted_plugins()
    for ep in metadata.entry_points(group=PROJECT_NAME):
        if ep.name in block or (allow is not None and ep.name not in allow):
            continue
        if trusted_only and not {ep.name, ep.dist.name if ep.dist else ""} & trusted:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        dist = (ep.dist.name, ep.dist.version) if ep.dist is not None else ("unknown", "unknown")
        where = f"plugin {ep.name!r} (distribution {dist[0]} {dist[1]}, entry point {ep.value!r})"
        try:
            if ep.value.split(":")[0] in BUILTIN_PLUGINS:
                raise PluginError("it names a built-in module, which registers itself")
            plugin = ep.load()
            if pm.is_registered(plugin):
                raise PluginError(f"its module is already registered as plugin "
                                  f"{pm.get_name(plugin)!r}")
            pm.register(plugin, name=ep.name)
            unknown = _unknown_hooks(pm, plugin)
            if unknown:
                pm.unregister(plugin)
                raise PluginError(f"it implements unknown hooks {unknown}; valid hooks: "
                                  f"{', '.join(HOOK_NAMES)}")
        except Exception as exc:
            msg = (f"{where} failed to load and was skipped: {type(exc).__name__}: {exc}. "
                   f"Fix or uninstall it, or set HARNESS_DISABLE_PLUGINS={ep.name}")
            if pm.strict:
                raise PluginError(msg) from exc
            warnings.warn(msg, HarnessPluginWarning, stacklevel=3)
            continue
        pm.distributions[ep.name] = dist


def make_plugin_manager(*, strict: bool = False, load_entrypoints: bool = True,
                        extra_plugins: tuple[Any, ...] = (),
                        trusted_only: bool = False) -> HarnessPluginManager:
    """Build a manager with hookspecs, entry-point plugins (only the trusted ones with
    ``trusted_only``), built-ins and ``extra_plugins``."""
    pm = HarnessPluginManager(strict=strict)
    pm.add_hookspecs(hookspecs)
    block = _env_list("HARNESS_DISABLE_PLUGINS") or set()
    if load_entrypoints:
        _load_entry_points(pm, block, trusted_only)
    for module_name in BUILTIN_PLUGINS:
        if module_name in block:
            continue
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        pm.distributions[module_name] = (DISTRIBUTION, __version__)
    for plugin in extra_plugins:
        name = pm.register(plugin)
        module = getattr(plugin, "__module__", None) or getattr(plugin, "__name__", "")
        pm.distributions[name] = (str(module).split(".")[0] or "unknown", "unknown")
    pm.check_pending()
    return pm


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


def plugin_infos(pm: HarnessPluginManager) -> list[PluginInfo]:
    """Name, distribution, version and implemented hooks of every registered plugin."""
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or []))
        dist, version = pm.distribution_of(name)
        out.append(PluginInfo(name, dist, version, hooks))
    return out
