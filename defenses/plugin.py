"""Registers the built-in defenses through the public hook."""

from __future__ import annotations

import harness


@harness.hookimpl
def harness_register_defenses(register):
    from defenses.confidence_noise import ConfidenceNoise
    from defenses.exit_noise import ExitNoise
    from defenses.jitter import Jitter
    from defenses.none import NoDefense
    from defenses.output import GaussianNoise, LabelOnly, ReverseSigmoid, Rounding
    from defenses.padding import PadBucket, PadConstant
    from defenses.per_class import ConfidenceGuidedRandomness, PerClassExiting
    from defenses.prada import Prada
    from defenses.stack import DefenseStack
    from defenses.timeguard import TimeGuard

    for cls in (NoDefense, PadConstant, PadBucket, Jitter, TimeGuard, ExitNoise,
                ConfidenceNoise, PerClassExiting, ConfidenceGuidedRandomness, LabelOnly, Rounding,
                ReverseSigmoid, GaussianNoise, Prada, DefenseStack):
        register(cls)
