"""The built-in components pass the conformance kit; the kit catches broken components."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from harness.stages import Defense
from harness.testing import (
    ConformanceError,
    check_attack,
    check_component,
    check_defense,
    check_victim,
    conformance_cases,
)

FAST_ATTACK_PARAMS = {"epochs": 1}


@pytest.mark.parametrize("cls", conformance_cases("defense"))
def test_builtin_defenses_conform(cls):
    check_defense(cls)


@pytest.mark.parametrize("cls", conformance_cases("attack"))
def test_builtin_attacks_conform(cls):
    params = {k: v for k, v in FAST_ATTACK_PARAMS.items() if k in cls.param_names()}
    check_attack(cls, params)


def test_builtin_victim_conforms(tmp_path):
    from victims.zoo import DigitsCNN

    trained = check_victim(DigitsCNN, {"epochs": 1, "width": 8}, cache_dir=tmp_path)
    assert trained.model.num_exits >= 4


class StoresDerived(Defense):
    name = "stores_derived"

    def __init__(self, scale=1.0):
        self.scale = scale
        self.doubled = scale * 2


class Unseeded(Defense):
    name = "unseeded"

    def __init__(self):
        pass

    def shape_latency(self, batch):
        return batch.latency_s + np.random.random(len(batch)) * 1e-3


class BadName(Defense):
    name = "Bad-Name"


def test_kit_names_component_check_and_fix():
    with pytest.raises(ConformanceError, match=r"'stores_derived' failed check "
                                               r"'init_only_stores_params'.*Fix:"):
        check_component(StoresDerived)
    with pytest.raises(ConformanceError, match="'seeded_determinism'"):
        check_defense(Unseeded)
    with pytest.raises(ConformanceError, match="snake_case"):
        check_component(BadName)


@pytest.mark.parametrize("kind", ["victim", "attack", "defense", "dataset", "exit_estimator",
                                  "backend", "architecture"])
def test_every_builtin_component_declares_and_checks_its_parameters(kind):
    for param in conformance_cases(kind):
        check_component(param.values[0])


class Unconstrained(Defense):
    name = "unconstrained"

    def __init__(self, scale=1.0):
        self.scale = scale


class LaxValidate(Defense):
    name = "lax_validate"
    _parameter_constraints: ClassVar[dict] = {"scale": [float]}

    def __init__(self, scale=1.0):
        self.scale = scale

    def validate(self, registry=None):  # forgets super().validate()
        pass


def test_kit_requires_constraints_and_a_real_validate():
    with pytest.raises(ConformanceError, match=r"'parameter_constraints'.*\['scale'\]"):
        check_component(Unconstrained)
    with pytest.raises(ConformanceError, match=r"'validate_refuses'.*super\(\).validate"):
        check_component(LaxValidate)
