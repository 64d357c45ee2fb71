"""The ``exit_steal`` variants: other exit estimators, the reference, other defaults.

``exit_steal_ruptures``, ``_kde`` and ``_bocpd`` are the timing attack with another
unsupervised exit estimator; ``exit_steal_reference`` is handed the true served exits (a
reference, never ranked). :func:`with_defaults` gives a variant other defaults while
keeping ``exit_steal``'s signature (so ``get_params`` round-trips); the adaptive variants
(:mod:`attacks.adaptive`) use it too. :data:`LONG_TRAINING` is the training kept by the
variants whose quality fell when the default epochs were halved.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from attacks.exit_steal import ExitStealAttack
from harness.protocol import Attack

LONG_TRAINING: dict[str, int] = {"epochs": 60, "finetune_epochs": 20}
"""The training of variants whose quality fell with the default 30 + 10 epochs:
``exit_steal_repeat`` and ``exit_steal_perturb`` (they train on fewer distinct inputs)
and ``exit_steal_ruptures`` (docs/design.md section 9)."""


def with_defaults(**defaults: Any) -> Callable[..., None]:
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


class ExitStealRuptures(ExitStealAttack):
    """``exit_steal`` with the ruptures (Dynp) changepoint estimator (and the longer training)."""

    name = "exit_steal_ruptures"
    default_estimator = "ruptures"
    __init__ = with_defaults(**LONG_TRAINING)


class ExitStealKde(ExitStealAttack):
    """``exit_steal`` with the KDE density-valley estimator (the paper's v2)."""

    name = "exit_steal_kde"
    default_estimator = "kde"


class ExitStealBocpd(ExitStealAttack):
    """``exit_steal`` with online Bayesian changepoint detection."""

    name = "exit_steal_bocpd"
    default_estimator = "bocpd"


class ExitStealReference(ExitStealAttack):
    """Reference upper bound: the true served exits replace the estimates."""

    name = "exit_steal_reference"
    default_estimator = "true_exits"
    reference = True


EXIT_STEAL_ATTACKS: tuple[type[Attack], ...] = (
    ExitStealAttack, ExitStealRuptures, ExitStealKde, ExitStealBocpd, ExitStealReference)
