"""The conformance checks as pytest cases: one per check, or one per registered component.

:func:`parametrize_with_checks` is scikit-learn's decorator of the same name for plugin
components; :func:`checks_for` says which checks apply to a class; :func:`conformance_cases`
parametrizes a test over every registered component of a kind.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from harness.plugins.registry import load_registry
from harness.protocol import Attack, Victim
from harness.stages import Defense
from harness.testing.checks import check_attack, check_component, check_victim
from harness.testing.defense_checks import DEFENSE_CHECKS


def checks_for(cls: type) -> tuple[Callable[..., Any], ...]:
    """The checks that apply to a component class, in order."""
    if issubclass(cls, Defense):
        return (check_component, *DEFENSE_CHECKS)
    if issubclass(cls, Attack):
        return (check_attack,)
    if issubclass(cls, Victim):
        return (check_victim,)
    return (check_component,)


def parametrize_with_checks(components: list[Any]) -> Any:
    """``@parametrize_with_checks([MyDefense, (MyAttack, {"epochs": 1})])``: one case per check.

    The test receives ``component`` (the class, with its params bound) and ``check``::

        @parametrize_with_checks([MyDefense])
        def test_conformance(component, check):
            check(component)
    """
    import pytest  # a dev dependency: the kit's other checks run without it

    cases = []
    for item in components:
        cls, params = item if isinstance(item, tuple) else (item, None)
        for check in checks_for(cls):
            bound = functools.partial(check, params=params)
            cases.append(pytest.param(cls, bound, id=f"{cls.name}-{check.__name__}"))
    return pytest.mark.parametrize(("component", "check"), cases)


def conformance_cases(kind: str) -> list[Any]:
    """``pytest.param(cls, id=name)`` for each registered component of ``kind``."""
    import pytest  # a dev dependency, as above

    return [pytest.param(e.cls, id=e.name) for e in load_registry(untrusted="import").entries(kind)]
