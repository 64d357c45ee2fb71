"""The plugin author's kit, in the spirit of scikit-learn's ``check_estimator``.

* Checks: :func:`check_component`, :func:`check_defense`, :func:`check_attack`,
  :func:`check_victim` raise :class:`ConformanceError` naming the component, the check
  and the fix; :func:`parametrize_with_checks` makes one pytest case per check.
* Fixtures: :func:`tiny_victim`, :func:`tiny_endpoint`, :func:`tiny_oracle`,
  :func:`random_splits` (pytest fixtures of the same names: ``pytest_plugins =
  ["harness.testing.plugin"]``).
* :mod:`harness.testing.strategies`: hypothesis strategies for property tests.
* :mod:`harness.testing.pytester`: run ``harness`` on a plugin in a temporary environment.
"""

from __future__ import annotations

from harness.testing.checks import ConformanceError, check_attack, check_component, check_victim
from harness.testing.defense_checks import check_defense
from harness.testing.fixtures import random_splits, tiny_endpoint, tiny_oracle, tiny_victim
from harness.testing.parametrize import conformance_cases, parametrize_with_checks

__all__ = ["ConformanceError", "check_attack", "check_component", "check_defense",
           "check_victim", "conformance_cases", "parametrize_with_checks", "random_splits",
           "tiny_endpoint", "tiny_oracle", "tiny_victim"]
