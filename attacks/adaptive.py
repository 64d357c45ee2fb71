"""Adaptive ``exit_steal`` variants: the settings a careful attacker picks against a defense.

Each variant is ``exit_steal`` with other defaults for its adaptive settings (see
:mod:`attacks.exit_steal`); every parameter stays overridable, so
``attack.exit_steal_repeat.repeats=5`` works like any other parameter. ``targets``
names the defense mechanisms a variant is built against (documentation and reports
only; nothing dispatches on it). They are real attacks (not ``reference``), so a
defense's leaderboard score, its worst case over real attacks, includes them.

``benchmarks/adaptive_attacks.py`` runs each variant against its targets beside plain
``exit_steal``; its committed results say where a variant wins and where it does not.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from attacks.exit_steal import ExitStealAttack


def _defaults(**defaults: Any) -> Callable[..., None]:
    """``ExitStealAttack.__init__`` with other defaults, in its signature (``get_params``)."""
    base = ExitStealAttack.__init__
    sig = inspect.signature(base)
    unknown = set(defaults) - set(sig.parameters)
    if unknown:
        raise TypeError(f"exit_steal has no parameter(s) {sorted(unknown)}")

    def __init__(self, **params: Any) -> None:
        base(self, **{**defaults, **params})

    __init__.__signature__ = sig.replace(parameters=[  # type: ignore[attr-defined]
        p.replace(default=defaults.get(p.name, p.default)) for p in sig.parameters.values()])
    __init__.__doc__ = base.__doc__
    return __init__


class AdaptiveExitSteal(ExitStealAttack):
    """Base of the adaptive variants: ``targets`` lists the mechanisms aimed at."""

    targets: ClassVar[tuple[str, ...]] = ()


class ExitStealRepeat(AdaptiveExitSteal):
    """Against random delay (jitter): three repeats per input, latency = their minimum.

    A delay only ever adds time, so the minimum of three independent draws is the
    closest to the computation (exponential delays: a third of the mean delay; uniform
    ones: a quarter of the range instead of a half). It costs two thirds of the inputs.
    """

    name = "exit_steal_repeat"
    targets = ("jitter",)
    __init__ = _defaults(repeats=3, combine="min")


class ExitStealPerturb(AdaptiveExitSteal):
    """Against input-keyed delay (timeguard): repeats are slightly perturbed copies.

    Exact repeats of an input get the same keyed delay; copies moved by up to 5% of the
    input range (beyond the defense's quantisation step) each draw a fresh one, and the
    minimum of three keeps the least delayed.
    """

    name = "exit_steal_perturb"
    targets = ("timeguard",)
    __init__ = _defaults(repeats=3, combine="min", repeat_perturb=0.05)


class ExitStealNoisy(AdaptiveExitSteal):
    """Against exit noise: estimated exits are treated as noisy labels (rate 0.2).

    The strategy loss weights each query by the posterior probability that its
    estimated exit is the one the victim's strategy chose
    (:mod:`attacks.noisy_labels`).
    """

    name = "exit_steal_noisy"
    targets = ("exit_noise", "confidence_noise")
    __init__ = _defaults(exit_label_noise=0.2)


class ExitStealLabels(AdaptiveExitSteal):
    """Against output perturbation: trains on the returned top-1 labels only.

    Rounding, reverse sigmoid and noise keep the top-1 class but distort the
    probabilities that exit-logit matching would regress onto.
    """

    name = "exit_steal_labels"
    targets = ("label_only", "rounding", "reverse_sigmoid", "gaussian_noise")
    __init__ = _defaults(performance="labels")


ADAPTIVE_ATTACKS: tuple[type[AdaptiveExitSteal], ...] = (
    ExitStealRepeat, ExitStealPerturb, ExitStealNoisy, ExitStealLabels)
