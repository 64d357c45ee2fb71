"""Plugin manager construction and the component registry built from it.

``make_plugin_manager()`` builds and returns a manager (there is no global one):
hookspecs, entry points of group ``harness`` (allow-list ``HARNESS_LOAD_PLUGINS``,
block-list ``HARNESS_DISABLE_PLUGINS``, both comma-separated entry-point names), then
the built-in plugin modules, then ``check_pending()``. A plugin that fails to import is
skipped with a warning naming it, its distribution and the error, unless ``strict``.

Only entry points the user trusts (``HARNESS_TRUSTED_PLUGINS``) are imported by default;
the others are named in ``pm.hosted`` and described by a confined plugin host
(:mod:`harness.plugins.hosted`, docs/design.md section 10), so the evaluator never runs
their code.
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


UNTRUSTED_MODES = ("hosted", "import", "skip")
"""What a manager does with an entry point the user has not named trusted: leave it to a
confined plugin host (``hosted``, the evaluator's default: never imported here),
``import`` it (workers, already confined; and the user's own tools), or ``skip`` it."""


class HarnessPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers each plugin's distribution and version, and the
    untrusted entry points it left to a plugin host (``hosted``)."""

    def __init__(self, strict: bool = False) -> None:
        super().__init__(PROJECT_NAME)
        self.strict = strict
        self.distributions: dict[str, tuple[str, str]] = {}
        self.hosted: list[str] = []

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


def is_trusted(ep: metadata.EntryPoint) -> bool:
    """Has the user named this entry point, or its distribution, trusted?"""
    return bool({ep.name, ep.dist.name if ep.dist else ""} & trusted_plugins())


def _load_entry_points(pm: HarnessPluginManager, block: set[str], untrusted: str) -> None:
    allow = _env_list("HARNESS_LOAD_PLUGINS")
    for ep in metadata.entry_points(group=PROJECT_NAME):
        if ep.name in block or (allow is not None and ep.name not in allow):
            continue
        if untrusted != "import" and not is_trusted(ep):
            if untrusted == "hosted" and ep.name not in pm.hosted:
                pm.hosted.append(ep.name)
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
                        untrusted: str = "hosted") -> HarnessPluginManager:
    """Build a manager with hookspecs, the trusted entry-point plugins (the others as
    ``untrusted`` says: :data:`UNTRUSTED_MODES`), built-ins and ``extra_plugins``."""
    if untrusted not in UNTRUSTED_MODES:
        raise ValueError(f"untrusted={untrusted!r}; allowed: {', '.join(UNTRUSTED_MODES)}")
    pm = HarnessPluginManager(strict=strict)
    pm.add_hookspecs(hookspecs)
    block = _env_list("HARNESS_DISABLE_PLUGINS") or set()
    if load_entrypoints:
        _load_entry_points(pm, block, untrusted)
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
    """A plugin, and whether its code runs in the evaluator (``built-in``, ``trusted``) or
    only in confined workers (``sandboxed``: the evaluator never imported it, so its hooks
    are unknown here)."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]
    trust: str = "built-in"


def plugin_infos(pm: HarnessPluginManager) -> list[PluginInfo]:
    """Name, distribution, version, hooks and trust of every plugin: those registered in
    ``pm`` and those it left to the plugin host."""
    out = []
    trusted = trusted_plugins()
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or []))
        dist, version = pm.distribution_of(name)
        trust = ("built-in" if dist == DISTRIBUTION else
                 "trusted" if {name, dist} & trusted else "imported (untrusted)")
        out.append(PluginInfo(name, dist, version, hooks, trust))
    for ep in metadata.entry_points(group=PROJECT_NAME):
        if ep.name in pm.hosted:
            dist = ep.dist
            out.append(PluginInfo(ep.name, dist.name if dist else "unknown",
                                  dist.version if dist else "unknown", (), "sandboxed"))
    return sorted(out, key=lambda i: i.name)
