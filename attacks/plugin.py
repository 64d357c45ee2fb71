"""Registers the built-in attacks and exit estimators through the public hooks."""

from __future__ import annotations

import harness


@harness.hookimpl
def harness_register_attacks(register):
    from attacks.activethief import ActiveThiefAttack
    from attacks.adaptive import ADAPTIVE_ATTACKS
    from attacks.exit_steal_profiled import ExitStealProfiled
    from attacks.exit_steal_variants import EXIT_STEAL_ATTACKS
    from attacks.function_only import FunctionOnlyAttack
    from attacks.jbda import JbdaAttack
    from attacks.knockoff import KnockoffAttack

    for attack in (KnockoffAttack, JbdaAttack, ActiveThiefAttack, FunctionOnlyAttack):
        register(attack)
    for attack in (*EXIT_STEAL_ATTACKS, ExitStealProfiled, *ADAPTIVE_ATTACKS):
        register(attack)


@harness.hookimpl
def harness_register_exit_estimators(register):
    from attacks.exit_estimation import BUILTIN_ESTIMATORS

    for estimator in BUILTIN_ESTIMATORS:
        register(estimator)
