"""The defense stack: order within each stage, one member = that member, labels, grammar."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

import harness
from defenses.stack import DefenseStack
from harness.errors import ConfigError
from harness.plugins.manager import make_plugin_manager
from harness.plugins.registry import Registry
from harness.run.config import parse_overrides
from harness.run.grid import expand_grid
from harness.stages import Defense, StageBatch
from harness.testing import check_defense
from harness.testing.fixtures import tiny_endpoint, tiny_victim


class AddDelay(Defense):
    """Test defense: adds ``delay`` seconds plus a uniform draw of ``spread`` seconds."""

    name = "add_delay"
    _parameter_constraints: ClassVar[dict] = {"delay": [float], "spread": [float]}

    def __init__(self, delay: float = 1e-3, spread: float = 1e-3) -> None:
        self.delay = delay
        self.spread = spread

    def shape_latency(self, batch: StageBatch) -> np.ndarray:
        return batch.latency_s + self.delay + batch.rng.uniform(0, self.spread, len(batch))


class Quantise(Defense):
    """Test defense: rounds latencies up to whole milliseconds (order matters after it)."""

    name = "quantise"

    def __init__(self) -> None:
        pass

    def shape_latency(self, batch: StageBatch) -> np.ndarray:
        return np.ceil(batch.latency_s * 1e3) / 1e3


class RefuseOdd(Defense):
    """Test defense: refuses every second query it sees and counts what it saw."""

    name = "refuse_odd"

    def __init__(self) -> None:
        pass

    def reset(self) -> None:
        self.seen = 0

    def admit(self, batch: StageBatch) -> np.ndarray:
        mask = (np.arange(self.seen, self.seen + len(batch)) % 2) == 0
        self.seen += len(batch)
        return mask

    def report(self) -> dict[str, float]:
        return {"seen": self.seen}


class TestPlugin:
    @harness.hookimpl
    def harness_register_defenses(self, register):
        for cls in (AddDelay, Quantise, RefuseOdd):
            register(cls)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.from_manager(make_plugin_manager(load_entrypoints=False,
                                                     extra_plugins=(TestPlugin(),)))


@pytest.fixture(scope="module")
def victim():
    return tiny_victim()


def _bound(defense: Defense, registry: Registry) -> Defense:
    defense.bind(registry)
    defense.reset()
    return defense


def _answer(victim, defense, x, seed=4):
    return tiny_endpoint(victim, defense, seed=seed).respond(x)


def test_stack_of_one_member_equals_that_member(victim, registry):
    x = victim.data.attacker.x[:40]
    alone = _answer(victim, _bound(AddDelay(delay=2e-3), registry), x)
    stacked = _answer(victim, _bound(DefenseStack(members=[
        {"name": "add_delay", "params": {"delay": 2e-3}}]), registry), x)
    for field in ("probs", "exits", "latency_s", "admitted", "depth"):
        np.testing.assert_array_equal(getattr(alone, field), getattr(stacked, field))


def test_members_apply_in_listed_order(victim, registry):
    x = victim.data.attacker.x[:30]
    delay_then_round = _answer(victim, _bound(DefenseStack(members=["add_delay", "quantise"]),
                                              registry), x)
    round_then_delay = _answer(victim, _bound(DefenseStack(members=["quantise", "add_delay"]),
                                              registry), x)
    ms = delay_then_round.latency_s * 1e3
    np.testing.assert_allclose(ms, np.round(ms), atol=1e-6)  # rounding came last
    assert not np.allclose(round_then_delay.latency_s * 1e3,
                           np.round(round_then_delay.latency_s * 1e3), atol=1e-6)


def test_later_monitor_sees_only_admitted_queries(victim, registry):
    stack = _bound(DefenseStack(members=["refuse_odd", "refuse_odd"]), registry)
    response = _answer(victim, stack, victim.data.attacker.x[:20])
    # the first refuses 10 of 20; the second sees the 10 left and refuses 5 of them
    assert response.admitted.sum() == 5
    assert stack.report() == {"0:refuse_odd.seen": 20, "1:refuse_odd.seen": 10}


def test_stack_passes_check_defense(registry):
    check_defense(DefenseStack, {"members": ["add_delay", "quantise"]}, registry)


def test_label_names_the_members():
    assert DefenseStack.label_for({"members": ["a", {"name": "b", "params": {}}]}) == "a+b"


@pytest.mark.parametrize("members, match", [
    ([], "members is empty"),
    (["no_such_defense"], "no_such_defense"),
    ([{"name": "add_delay", "params": {"delay": "slow"}}], "add_delay"),
    ([{"nme": "add_delay"}], "must be a defense name"),
])
def test_bad_members_are_refused(registry, members, match):
    with pytest.raises(ConfigError, match=match):
        DefenseStack(members=members).validate(registry)


def test_plus_grammar_builds_a_stack_with_full_member_params(registry):
    spec = parse_overrides(["defenses=add_delay+quantise", "attacks=knockoff",
                            "defense.add_delay.delay=0.002"])
    (cell,) = expand_grid(spec, registry, victims=("digits_cnn",))
    assert cell.defense.name == "stack" and cell.defense.display == "add_delay+quantise"
    assert cell.defense.params == {"members": [
        {"name": "add_delay", "params": {"delay": 0.002, "spread": 0.001}},
        {"name": "quantise", "params": {}}]}


def test_sweep_expands_one_cell_per_value(registry):
    spec = parse_overrides(["defenses=add_delay,none", "attacks=knockoff",
                            "sweep.defense.add_delay.delay=0.001,0.004"])
    cells = expand_grid(spec, registry, victims=("digits_cnn",))
    shown = sorted(c.defense.display for c in cells)
    assert shown == ["add_delay[delay=0.001]", "add_delay[delay=0.004]", "none"]
    assert len({c.defense.params_json for c in cells}) == 3


def test_sweep_reaches_stack_members(registry):
    spec = parse_overrides(["defenses=add_delay+quantise", "attacks=knockoff",
                            "sweep.defense.add_delay.spread=[0.0,0.002]"])
    cells = expand_grid(spec, registry, victims=("digits_cnn",))
    assert [c.defense.display for c in cells] == ["add_delay[spread=0.0]+quantise",
                                                  "add_delay[spread=0.002]+quantise"]


@pytest.mark.parametrize("overrides, match", [
    (["defenses=add_delay", "sweep.defense.add_delay.delay=0.1",
      "defense.add_delay.delay=0.2"], "both set and swept"),
    (["defenses=none", "sweep.defense.add_delay.delay=0.1"], "not in this grid"),
    (["attacks=knockoff+exit_steal"], "only defenses stack"),
    (["defenses=add_delay+"], "no empty member"),
])
def test_bad_stack_and_sweep_keys(registry, overrides, match):
    with pytest.raises(ConfigError, match=match):
        expand_grid(parse_overrides(["attacks=knockoff", *overrides][-len(overrides) - 1:]),
                    registry, victims=("digits_cnn",))


@pytest.mark.parametrize("raw, match", [
    ("sweep.defense.jitter=0.1", "a sweep is"),
    ("sweep.defense.jitter.scale=", "give the values"),
    ("sweep.defense.jitter.scale=0.1,0.1", "listed twice"),
])
def test_bad_sweep_syntax(raw, match):
    with pytest.raises(ConfigError, match=match):
        parse_overrides([raw])


class ParamsNamedLikeMethods(Defense):
    """Test defense whose own parameters are called ``report`` and ``bind``."""

    name = "shadowing"
    _parameter_constraints: ClassVar[dict] = {"report": [str], "bind": [str]}

    def __init__(self, report: str = "out.json", bind: str = "0.0.0.0") -> None:
        self.report = report
        self.bind = bind


def test_parameters_named_report_or_bind_do_not_shadow_the_protocol(victim, registry):
    defense = ParamsNamedLikeMethods()
    stack = _bound(DefenseStack(members=["add_delay"]), registry)
    stack._members.append(defense)  # a member whose parameters shadow the methods
    endpoint = tiny_endpoint(victim, stack)
    endpoint.respond(victim.data.attacker.x[:4])
    assert endpoint.report() == {}
    check_defense(ParamsNamedLikeMethods, registry=registry)
