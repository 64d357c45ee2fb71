"""Stand-ins for the components of untrusted plugins, so the evaluator never imports them.

A confined plugin host (:mod:`harness.isolation.plugin_host`) imports the untrusted
plugins and describes each component as data (:class:`HostedDescription`). The evaluator
registers a stand-in class per component (:func:`stand_in`): it has the component's name,
kind, parameter names and defaults, and answers the questions the evaluator asks before
any work (which parameters, which label, are they valid?) by asking the host, which runs
the plugin's own ``__init__``, ``get_params``, ``label_for`` and ``validate``. A stand-in
has none of the component's behaviour: the real code runs only in confined workers
(docs/design.md section 10). What the host says is data from untrusted code; the
evaluator uses it for names, labels and validation messages only, never to grade.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.components import Component
from harness.errors import ConfigError

USABLE_KINDS = ("attack", "defense", "exit_estimator", "exit_policy", "architecture")
"""Kinds an untrusted plugin may provide: they run in the workers. Victims, datasets and
backends run in the evaluator (and before the server worker is confined): they must be
trusted (``HARNESS_TRUSTED_PLUGINS``)."""


@dataclass(frozen=True)
class HostedDescription:
    """One component of an untrusted plugin, as the plugin host describes it."""

    kind: str
    name: str
    plugin: str
    distribution: str
    version: str
    doc: str
    param_names: tuple[str, ...]
    defaults: dict[str, Any]
    reference: bool
    source_digest: str
    parameter_lines: tuple[str, ...]
    traits: dict[str, Any] = field(default_factory=dict)
    """What the evaluator may ask of a component before any work, answered by its code
    in the host: an exit policy's ``trainable``, a defense's declared ``stages`` (display only)."""

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "param_names": list(self.param_names),
                "parameter_lines": list(self.parameter_lines)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HostedDescription:
        return cls(**{**data, "param_names": tuple(data["param_names"]),
                      "parameter_lines": tuple(data["parameter_lines"]),
                      "reference": bool(data["reference"])})


@dataclass(frozen=True)
class Resolution:
    """What the plugin's own code said about one set of parameters."""

    params: dict[str, Any]
    label: str
    construct_error: str = ""
    validate_error: str = ""


class HostLink(Protocol):
    """The evaluator's connection to the plugin host."""

    def resolve(self, kind: str, name: str, params: dict[str, Any]) -> Resolution: ...


class HostedComponent(Component):
    """Base of every stand-in; ``hosted`` says what it stands for."""

    hosted: HostedDescription
    link: HostLink

    @classmethod
    def param_names(cls) -> list[str]:
        return list(cls.hosted.param_names)

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        return dict(cls.hosted.defaults)

    @classmethod
    def label_for(cls, params: dict[str, Any]) -> str:
        return cls.link.resolve(cls.kind, cls.name, dict(params)).label

    def __init__(self, **params: Any) -> None:
        resolution = type(self).link.resolve(self.kind, self.name, params)
        if resolution.construct_error:
            raise ConfigError(resolution.construct_error)
        self._resolution = resolution
        for key, value in resolution.params.items():
            setattr(self, key, value)

    def validate(self, registry: Any = None) -> None:
        if self._resolution.validate_error:
            raise ConfigError(self._resolution.validate_error)


class HostedPolicy(HostedComponent):
    """Stand-in of an untrusted exit policy: its name, and whether it is trainable (an
    attack's validation asks); its scores are computed only in workers."""

    def trainable(self) -> bool:
        return bool(self.hosted.traits.get("trainable", False))


def stand_in(description: HostedDescription, link: HostLink) -> type[HostedComponent]:
    """The stand-in class of one hosted component."""
    base = HostedPolicy if description.kind == "exit_policy" else HostedComponent
    return type(f"Hosted_{description.name}", (base,), {
        "name": description.name, "kind": description.kind,
        "reference": description.reference, "__doc__": description.doc,
        "__module__": __name__, "hosted": description, "link": link})


def is_hosted(cls: object) -> bool:
    """Is ``cls`` a stand-in for a component of an untrusted plugin?"""
    return isinstance(cls, type) and issubclass(cls, HostedComponent)


def params_key(params: dict[str, Any]) -> str:
    """A canonical key of a parameter set (for caching the host's answers)."""
    return json.dumps(params, sort_keys=True, default=str)
