"""Parameter constraints, declared once per component (scikit-learn's ``_parameter_constraints``).

A component class maps each ``__init__`` parameter to a list of accepted alternatives::

    _parameter_constraints = {
        "epochs": [Interval("int", 1, 100_000)],
        "lr": [Interval("real", 0, 1, closed="right")],
        "combine": [Options("min", "median")],
        "estimator": [ComponentName("exit_estimator"), None],
        "estimator_params": [dict, None],
    }

An alternative is a :class:`Constraint`, ``None`` (the value may be None) or a Python
type (``dict``, ``bool``, ``str``, ...). :func:`check_params` is what
``Component.validate()`` runs: it is called when the grid is expanded and by the
conformance kit, so a bad value stops a run before any work, naming the component,
the parameter and what is allowed. Numbers are never NaN or infinite, and ``True`` is
not an integer.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from harness.errors import ConfigError
from harness.lookup import Lookup

Closed = Literal["both", "left", "right", "neither"]


def is_int(value: Any) -> bool:
    """An integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A finite real number that is not a bool."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(float(value)))


class Constraint(ABC):
    """One accepted form of a parameter value."""

    @abstractmethod
    def accepts(self, value: Any, registry: Lookup | None) -> bool:
        """Whether ``value`` satisfies the constraint (names are checked when a registry is given)."""

    @abstractmethod
    def describe(self) -> str:
        """What is allowed, for errors and ``harness list``."""


class Interval(Constraint):
    """A number of ``kind`` ``int`` or ``real`` in ``[low, high]`` (``None`` = unbounded)."""

    def __init__(self, kind: Literal["int", "real"], low: float | None, high: float | None,
                 closed: Closed = "both") -> None:
        self.kind = kind
        self.low = low
        self.high = high
        self.closed = closed

    def accepts(self, value: Any, registry: Lookup | None) -> bool:
        if not (is_int(value) if self.kind == "int" else is_real(value)):
            return False
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not left)):
            return False
        return not (self.high is not None
                    and (value > self.high or (value == self.high and not right)))

    def describe(self) -> str:
        noun = "an integer" if self.kind == "int" else "a finite number"
        lo = "-inf" if self.low is None else _number(self.low)
        hi = "inf" if self.high is None else _number(self.high)
        lb = "[" if self.closed in ("both", "left") and self.low is not None else "("
        rb = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        return f"{noun} in {lb}{lo}, {hi}{rb}"


def _number(value: float) -> str:
    return str(value) if is_int(value) else f"{value:g}"


class Options(Constraint):
    """One of a fixed set of values (usually strings)."""

    def __init__(self, *values: Any) -> None:
        self.values = values

    def accepts(self, value: Any, registry: Lookup | None) -> bool:
        return isinstance(value, str | int | float) and not isinstance(value, bool) and (
            value in self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


class ComponentName(Constraint):
    """The name of a registered component of ``kind`` (e.g. ``exit_estimator``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def accepts(self, value: Any, registry: Lookup | None) -> bool:
        if not isinstance(value, str):
            return False
        return registry is None or value in registry.names(self.kind)

    def describe(self) -> str:
        return f"a registered {self.kind} name (`harness list`)"


class ListOf(Constraint):
    """A list (or tuple) whose items all satisfy ``item``; optionally of a fixed length range."""

    def __init__(self, item: Constraint, min_len: int = 0, max_len: int | None = None) -> None:
        self.item = item
        self.min_len = min_len
        self.max_len = max_len

    def accepts(self, value: Any, registry: Lookup | None) -> bool:
        if not isinstance(value, list | tuple):
            return False
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            return False
        return all(self.item.accepts(v, registry) for v in value)

    def describe(self) -> str:
        size = "" if self.min_len == 0 else f"{self.min_len}+ "
        return f"a list of {size}items, each {self.item.describe()}"


class InstanceOf(Constraint):
    """A value of one of the given Python types (bool is never an int or a float)."""

    def __init__(self, *types: type) -> None:
        self.types = types

    def accepts(self, value: Any, registry: Lookup | None) -> bool:
        if isinstance(value, bool) and bool not in self.types:
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return isinstance(value, self.types)

    def describe(self) -> str:
        names = {"dict": "a JSON object (dict)", "list": "a list", "str": "a string",
                 "bool": "true/false", "int": "an integer", "float": "a number"}
        return " or ".join(names.get(t.__name__, t.__name__) for t in self.types)


def as_constraint(alternative: Any) -> Constraint | None:
    """Normalise one declared alternative; ``None`` means "None is allowed"."""
    if alternative is None:
        return None
    if isinstance(alternative, Constraint):
        return alternative
    if isinstance(alternative, type):
        return InstanceOf(alternative)
    raise TypeError(f"unsupported parameter constraint {alternative!r}; use a "
                    "harness.params.Constraint, a type or None")


def describe_alternatives(alternatives: Iterable[Any]) -> str:
    """``"an integer in [1, inf) or null"``."""
    parts = []
    for alt in alternatives:
        c = as_constraint(alt)
        parts.append("null" if c is None else c.describe())
    return " or ".join(parts) if parts else "any JSON value"


def accepts(alternatives: Iterable[Any], value: Any, registry: Lookup | None) -> bool:
    """Whether any alternative accepts ``value``."""
    for alt in alternatives:
        c = as_constraint(alt)
        if (c is None and value is None) or (c is not None and c.accepts(value, registry)):
            return True
    return False


def check_value(what: str, value: Any, alternatives: Iterable[Any],
                registry: Lookup | None = None, shown: Any = None) -> None:
    """Raise a :class:`ConfigError` ``"{what}={value!r} is invalid; allowed: ..."`` unless an
    alternative accepts ``value`` (registered names are listed for a component name);
    ``shown`` replaces the value in the message (what the user typed, before parsing)."""
    alternatives = list(alternatives)
    if accepts(alternatives, value, registry):
        return
    hint = ""
    for alt in alternatives:
        if isinstance(alt, ComponentName) and registry is not None and isinstance(value, str):
            hint = (f"; registered {alt.kind} names: "
                    f"{', '.join(registry.names(alt.kind)) or 'none'}")
    raise ConfigError(f"{what}={value if shown is None else shown!r} is invalid; allowed: "
                      f"{describe_alternatives(alternatives)}{hint}")


def check_params(owner: str, params: Mapping[str, Any], constraints: Mapping[str, list[Any]],
                 registry: Lookup | None = None) -> None:
    """Raise a :class:`ConfigError` for the first parameter no alternative accepts."""
    for name, value in params.items():
        alternatives = constraints.get(name)
        if alternatives is not None:
            check_value(f"{owner}: parameter {name}", value, alternatives, registry)
