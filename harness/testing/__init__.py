"""The plugin author's kit, in the spirit of scikit-learn's ``check_estimator``.

``check_defense``, ``check_attack``, ``check_victim`` and ``check_component`` raise
:class:`ConformanceError` naming the component, the check and the fix.
"""

from __future__ import annotations

from harness.testing.checks import (
    ConformanceError,
    check_attack,
    check_component,
    check_defense,
    check_victim,
    conformance_cases,
    tiny_setup,
)

__all__ = ["ConformanceError", "check_attack", "check_component", "check_defense",
           "check_victim", "conformance_cases", "tiny_setup"]
