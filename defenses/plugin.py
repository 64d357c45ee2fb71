"""Registers the built-in defenses through the public hook."""

from __future__ import annotations

import harness


@harness.hookimpl
def harness_register_defenses(register):
    from defenses.none import NoDefense
    from defenses.stack import DefenseStack

    register(NoDefense)
    register(DefenseStack)
