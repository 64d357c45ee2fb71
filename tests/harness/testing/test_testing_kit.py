"""The plugin author's kit: stage checks catch broken defenses, strategies, pytester."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings

from harness.params import Interval
from harness.stages import Defense
from harness.strategy import EntropyPolicy, MaxProbPolicy
from harness.testing import ConformanceError, check_defense, parametrize_with_checks
from harness.testing.parametrize import checks_for
from harness.testing.strategies import (
    exit_mixes,
    latency_traces,
    output_strategies,
    probability_vectors,
    query_batches,
)


class Jitter(Defense):
    """A well-behaved defense: random extra delay from batch.rng."""

    name = "jitter_ok"
    _parameter_constraints = {"scale_s": [Interval("real", 0, 1)]}  # noqa: RUF012

    def __init__(self, scale_s=1e-5):
        self.scale_s = scale_s

    def shape_latency(self, batch):
        return batch.latency_s + self.scale_s * batch.rng.random(len(batch))


class WritesInputs(Defense):
    name = "writes_inputs"

    def __init__(self):
        pass

    def admit(self, batch):
        batch.inputs[:] = 0.0
        return np.ones(len(batch), dtype=bool)


class ForgetsNothing(Defense):
    """Refuses everyone after 20 queries and never forgets (reset does nothing)."""

    name = "forgets_nothing"

    def __init__(self):
        pass

    def admit(self, batch):
        self.count = getattr(self, "count", 0) + len(batch)
        return np.full(len(batch), self.count <= 20)


class NanOnOddBatches(Defense):
    name = "nan_on_odd"

    def __init__(self):
        pass

    def shape_latency(self, batch):
        return batch.latency_s if len(batch) % 2 == 0 else np.full(len(batch), np.nan)


class Unnormalised(Defense):
    name = "unnormalised"

    def __init__(self):
        pass

    def perturb_outputs(self, batch):
        return batch.outputs + 0.01


def test_a_well_behaved_defense_passes_every_check():
    check_defense(Jitter)
    check_defense(Jitter, {"scale_s": 0.0})


@pytest.mark.parametrize(("cls", "check", "message"), [
    (WritesInputs, "stages", "read-only.*Fix: return new arrays"),
    (ForgetsNothing, "reset_honoured", "clear every per-client state in reset"),
    (NanOnOddBatches, "stages", "finite latency"),
    (Unnormalised, "stages", "probability simplex"),
])
def test_stage_checks_catch_broken_defenses(cls, check, message):
    with pytest.raises(ConformanceError, match=rf"'{cls.name}' failed check '{check}': .*{message}"):
        check_defense(cls)


@parametrize_with_checks([Jitter, (Jitter, {"scale_s": 0.0})])
def test_parametrize_with_checks_runs_each_check(component, check):
    check(component)


def test_parametrize_with_checks_makes_one_case_per_check():
    mark = parametrize_with_checks([Jitter])
    ids = [p.id for p in mark.args[1]]
    assert ids == [f"jitter_ok-{c.__name__}" for c in checks_for(Jitter)]
    assert "jitter_ok-check_reset_honoured" in ids and "jitter_ok-check_report" in ids
    assert len(ids) == 8


@settings(max_examples=40, deadline=None)
@given(query_batches((1, 4, 4), (-1.0, 2.0), max_size=5))
def test_query_batches_stay_in_range(x):
    assert x.dtype == np.float32 and x.shape[1:] == (1, 4, 4) and 1 <= len(x) <= 5
    assert x.min() >= -1.0 and x.max() <= 2.0


@settings(max_examples=40, deadline=None)
@given(probability_vectors(5))
def test_probability_vectors_lie_on_the_simplex(p):
    assert p.shape[1] == 5 and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(exit_mixes(6, min_size=100, max_size=300))
def test_exit_mixes_stay_in_range(exits):
    assert exits.dtype == np.int64 and exits.min() >= 0 and exits.max() <= 5


def test_exit_mixes_reach_empty_and_rare_exits():
    counts = []

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(exit_mixes(5, min_size=400, max_size=400))
    def collect(exits):
        counts.append(np.bincount(exits, minlength=5) / len(exits))

    collect()
    shares = np.stack(counts)
    assert (shares == 0).any()  # some exit never used
    assert ((shares > 0) & (shares < 0.03)).any()  # some exit at 1-2%


@settings(max_examples=30, deadline=None)
@given(latency_traces())
def test_latency_traces_are_positive_with_known_exits(trace):
    latency, exits = trace
    assert latency.shape == exits.shape and np.all(np.isfinite(latency)) and np.all(latency > 0)


@settings(max_examples=40, deadline=None)
@given(output_strategies(MaxProbPolicy(), 4, 10) | output_strategies(EntropyPolicy(), 3, 7))
def test_output_strategies_are_valid(strategy):
    strategy.validate(strategy.num_exits, 10 if strategy.policy.name == "max_prob" else 7)


@pytest.mark.integration
def test_harness_env_runs_the_cli_on_an_installed_plugin(harness_env):
    harness_env.install_module("kit_probe", textwrap.dedent("""
        import harness
        from harness.stages import Defense

        class Probe(Defense):
            name = "kit_probe"

            def __init__(self):
                pass

        @harness.hookimpl
        def harness_register_defenses(register):
            register(Probe)
    """), dist="kit-probe", version="2.0")
    res = harness_env.run("plugins", "--json")
    assert res.returncode == 0, res.stderr
    infos = {i["name"]: i for i in json.loads(res.stdout)}
    assert infos["kit_probe"]["distribution"] == "kit-probe"
    assert infos["kit_probe"]["version"] == "2.0"
