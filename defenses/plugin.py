"""Registers the built-in defenses through the public hook."""

from __future__ import annotations

import harness


@harness.hookimpl
def harness_register_defenses(register):
    from defenses.none import NoDefense
    from defenses.output import GaussianNoise, LabelOnly, ReverseSigmoid, Rounding
    from defenses.prada import Prada

    register(NoDefense)
    for cls in (LabelOnly, Rounding, ReverseSigmoid, GaussianNoise, Prada):
        register(cls)
