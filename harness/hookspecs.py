"""Hook specifications and the pluggy markers. Every hook is ``harness_``-prefixed.

``hookimpl`` (re-exported as ``harness.hookimpl``) marks a plugin's implementations;
``PROJECT_NAME`` is pluggy's project name and the entry-point group. Registration hooks
receive a ``register`` callback; a plugin calls it once per component class, e.g.::

    @harness.hookimpl
    def harness_register_defenses(register):
        register(MyDefense)

Built-in victims, attacks and defenses register through these same hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "harness"
"""pluggy's project name and the entry-point group third-party plugins register under."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Decorator for plugin hook implementations (``@harness.hookimpl``)."""

Register = Callable[[type], None]


@hookspec
def harness_register_datasets(register: Register) -> None:
    """Register :class:`harness.protocol.DatasetSource` subclasses."""


@hookspec
def harness_register_victims(register: Register) -> None:
    """Register :class:`harness.protocol.Victim` subclasses."""


@hookspec
def harness_register_attacks(register: Register) -> None:
    """Register :class:`harness.protocol.Attack` subclasses."""


@hookspec
def harness_register_defenses(register: Register) -> None:
    """Register :class:`harness.protocol.Defense` subclasses."""


@hookspec
def harness_register_exit_estimators(register: Register) -> None:
    """Register exit estimators (latencies -> estimated exit per query)."""


@hookspec
def harness_register_exit_policies(register: Register) -> None:
    """Register :class:`harness.strategy.ExitPolicy` subclasses."""


@hookspec
def harness_register_backends(register: Register) -> None:
    """Register :class:`harness.protocol.ServingBackend` subclasses (``torch``, ``onnx``)."""


@hookspec
def harness_register_architectures(register: Register) -> None:
    """Register :class:`harness.protocol.Architecture` subclasses (multi-exit network families).

    A victim plugin that ships its own family registers it here, so attacks granted the
    architecture can build substitutes of it (``ctx.new_network``).
    """


@hookspec
def harness_cell_finished(result: dict[str, Any]) -> None:
    """Called in the runner's process after each cell's result JSON is written."""
