"""Registers the contract's built-in exit policies (``max_prob``, ``entropy``).

Listed in :data:`harness.plugins.manager.BUILTIN_PLUGINS`; it uses the same hook a
third-party policy plugin uses.
"""

from __future__ import annotations

from harness.hookspecs import hookimpl
from harness.strategy import BUILTIN_POLICIES


@hookimpl
def harness_register_exit_policies(register):
    for policy in BUILTIN_POLICIES:
        register(policy)
