"""What the contract needs of the component registry, as small Protocols.

Parameter constraints check names of registered components, components validate the
parameters they pass to others, and a defense built of other components binds to the
run's registry. The contract states that need here; :class:`harness.plugins.registry.
Registry` fulfils it. So the contract never imports the plugin layer above it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from harness.strategy import ExitPolicy


class Entry(Protocol):
    """A registered component class and where it came from."""

    kind: str
    name: str
    cls: type
    plugin: str
    distribution: str
    version: str

    def label(self, display: str | None = None) -> str:
        """``"defense 'pad' (plugin p, dist 1.0)"``: how messages name the component."""
        ...


class Lookup(Protocol):
    """Read-only lookup of registered components by kind and name."""

    def names(self, kind: str) -> list[str]:
        """The registered names of ``kind``, sorted."""
        ...

    def get(self, kind: str, name: str) -> Entry:
        """The entry of ``name``; an unknown name raises an error listing the registered ones."""
        ...

    def policy(self, name: str) -> ExitPolicy:
        """A registered exit policy by name."""
        ...
