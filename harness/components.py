"""Scikit-learn style component base: ``__init__`` stores keyword params, nothing else.

Every pluggable component subclasses :class:`Component`. Parameters are read back
from the ``__init__`` signature by :meth:`Component.get_params`, so
``type(c)(**c.get_params())`` rebuilds an equal component; parameters are checked to be
JSON-serialisable because they enter the cell's config hash. Each class declares its
parameter constraints once (``_parameter_constraints``, see :mod:`harness.params`) and
:meth:`Component.validate` checks them, plus any cross-parameter rule a subclass adds
by overriding it, before any work.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any, ClassVar

from harness.errors import ConfigError
from harness.lookup import Lookup
from harness.params import check_params, describe_alternatives

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class Component:
    """Base class of every pluggable component (victim, attack, defense, estimator)."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "component"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}
    """Accepted alternatives per ``__init__`` parameter (see :mod:`harness.params`)."""

    @classmethod
    def param_names(cls) -> list[str]:
        """Keyword parameters of ``__init__`` (sklearn convention: no ``*args``)."""
        sig = inspect.signature(cls.__init__)
        names = []
        for p in sig.parameters.values():
            if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            names.append(p.name)
        return names

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        sig = inspect.signature(cls.__init__)
        return {
            n: sig.parameters[n].default
            for n in cls.param_names()
            if sig.parameters[n].default is not inspect.Parameter.empty
        }

    def get_params(self) -> dict[str, Any]:
        """Current parameters, read from the attributes ``__init__`` stored."""
        out = {}
        for n in self.param_names():
            if not hasattr(self, n):
                raise ConfigError(
                    f"{self.kind} {self.name!r}: __init__ did not store parameter {n!r} as "
                    f"self.{n}; components must store every keyword parameter unchanged"
                )
            out[n] = getattr(self, n)
        return out

    @classmethod
    def label_for(cls, params: dict[str, Any]) -> str:
        """How results and leaderboards name this component with ``params`` (its name;
        a composite such as the defense ``stack`` names its members)."""
        return cls.name

    def validate(self, registry: Lookup | None = None) -> None:
        """Raise :class:`ConfigError` naming this component for any invalid parameter.

        Checks every declared constraint; names of other components (policies,
        estimators, architectures) are checked against ``registry`` when one is given.
        Subclasses add cross-parameter rules by overriding this and calling ``super()``.
        """
        check_params(f"{self.kind} {self.name!r}", self.get_params(),
                     type(self)._parameter_constraints, registry)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def build_component(cls: type[Component], params: dict[str, Any]) -> Component:
    """Instantiate ``cls`` with ``params`` after checking names and JSON-serialisability."""
    valid = set(cls.param_names())
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ConfigError(
            f"{cls.kind} {cls.name!r} has no parameter(s) {unknown}; "
            f"valid parameters: {sorted(valid) or 'none'}"
        )
    obj = cls(**params)
    check_json_params(obj)
    return obj


def check_json_params(obj: Component) -> dict[str, Any]:
    params = obj.get_params()
    try:
        json.dumps(params, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{obj.kind} {obj.name!r}: parameters must be JSON-serialisable "
            f"(numbers, strings, booleans, lists, dicts, null): {exc}"
        ) from exc
    return params


def validate_name(name: object, owner: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(
            f"{owner}: component name {name!r} is not snake_case "
            f"(lowercase letters, digits, underscores, starting with a letter)"
        )
    return name


def check_nested(owner: str, registry: Lookup, kind: str, name: str,
                 params: dict[str, Any] | None, label: str) -> None:
    """Validate ``params`` meant for another registered component (e.g. ``estimator_params``)."""
    entry = registry.get(kind, name)
    try:
        build_component(entry.cls, dict(params or {})).validate(registry)
    except ConfigError as exc:
        raise ConfigError(f"{owner}: {label}={params} do not fit {kind} {name!r}: {exc}") from None
    except Exception as exc:  # the plugin's own __init__ rejected them
        raise ConfigError(f"{owner}: {label}={params} were rejected by {kind} {name!r} (plugin "
                          f"{entry.plugin}, {entry.distribution}): {type(exc).__name__}: "
                          f"{exc}") from None


def parameter_lines(cls: type) -> list[str]:
    """``name = default    allowed values`` per ``__init__`` parameter of a component."""
    if not isinstance(cls, type) or not issubclass(cls, Component):
        return []
    hosted = getattr(cls, "hosted", None)  # an untrusted plugin's stand-in: the host's lines
    if hosted is not None:
        return list(hosted.parameter_lines)
    defaults = cls.default_params()
    constraints = getattr(cls, "_parameter_constraints", {})
    lines = []
    for name in cls.param_names():
        default = json.dumps(defaults[name]) if name in defaults else "(required)"
        allowed = (describe_alternatives(constraints[name]) if name in constraints
                   else "undeclared")
        lines.append(f"{name + ' = ' + default:34} {allowed}")
    return lines
