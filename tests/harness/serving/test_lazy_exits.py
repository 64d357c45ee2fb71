"""Exits are computed, and charged, like on a deployed early-exit server.

An instrumented backend counts the rows each stage computes. A query must compute exactly
up to its answering exit when no defense stage asks for more, a defense that asks for a
deeper exit's outputs must have that computation charged (compute cost, modelled latency
and, under ``live``, the measured time), and a defense deciding exit by exit
(``exit_noise``) must never compute past the exit that answers.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from defenses.exit_noise import ExitNoise
from harness.errors import ComponentFailure
from harness.stages import Defense, StageBatch
from harness.testing.fixtures import default_registry, tiny_endpoint, tiny_victim
from harness.timing.models import AnalyticTiming, LiveTiming

CLEAN = AnalyticTiming(sigma=0.0, tail_prob=0.0)
"""Latency = base + cost_fraction[exit] * full, exactly: what was charged is readable."""
STAGE_SLEEP_S = 0.002


class ReadsLastExit(Defense):
    """Answers with the policy's exits but reads every query's last-exit output first."""

    name = "reads_last_exit"

    def __init__(self) -> None:
        pass

    def choose_exits(self, batch: StageBatch) -> np.ndarray:
        batch.per_exit_probs[-1]
        return batch.exits


class ReadsOneRow(Defense):
    """Asks for exit 1 of the first query only (and never needs the policy's exits)."""

    name = "reads_one_row"
    needs_policy_exits = False

    def __init__(self) -> None:
        pass

    def choose_exits(self, batch: StageBatch) -> np.ndarray:
        batch.exit_probs(1, rows=np.array([0]))
        return np.zeros(len(batch), dtype=np.int64)


class KeepsTheView(Defense):
    """Keeps ``per_exit_probs`` from choose_exits and reads it again in perturb_outputs,
    after the batch was answered and charged."""

    name = "keeps_the_view"

    def __init__(self) -> None:
        pass

    def choose_exits(self, batch: StageBatch) -> np.ndarray:
        self._kept = batch.per_exit_probs
        return batch.exits

    def perturb_outputs(self, batch: StageBatch) -> np.ndarray:
        return self._kept[-1]


class Counter:
    """Wraps a staged backend's ``_stage``: rows computed per exit (optionally slowed)."""

    def __init__(self, served, sleep_s: float = 0.0) -> None:
        self.rows = np.zeros(served.num_exits, dtype=np.int64)
        self._stage = served._stage
        self._sleep_s = sleep_s
        served._stage = self

    def __call__(self, k: int, h):
        if self._sleep_s:
            time.sleep(self._sleep_s)
        h, logits = self._stage(k, h)
        self.rows[k] += len(logits)
        return h, logits


@pytest.fixture(scope="module", params=["torch", "onnx"])
def parts(request, tmp_path_factory):
    registry = default_registry()
    victim = tiny_victim(registry=registry)
    served = registry.get("backend", request.param).cls().load(
        victim, "cpu", tmp_path_factory.mktemp("cache"))
    return victim, served


def reached(exits: np.ndarray, num_exits: int) -> np.ndarray:
    """Rows that must be computed at each exit when each query stops at ``exits``."""
    return np.array([(exits >= k).sum() for k in range(num_exits)])


def respond(parts, defense=None, timing=CLEAN, n=48, sleep_s=0.0):
    victim, served = parts
    endpoint = tiny_endpoint(victim, defense, timing=timing, served=served)
    counter = Counter(served, sleep_s)
    try:
        return endpoint.respond(victim.data.attacker.x[:n]), counter, served
    finally:
        served._stage = counter._stage


def test_a_query_computes_exactly_up_to_its_exit_when_no_stage_asks(parts):
    response, counter, served = respond(parts)
    k = served.num_exits
    assert len(np.unique(response.exits)) == k  # every exit answers some queries
    np.testing.assert_array_equal(counter.rows, reached(response.exits, k))
    np.testing.assert_array_equal(response.depth, response.exits)
    frac = np.asarray(served.cost_fraction)
    np.testing.assert_allclose(response.cost_fraction, frac[response.exits])
    np.testing.assert_allclose(response.latency_s, CLEAN.base_s + frac[response.exits]
                               * CLEAN.full_s)


def test_a_deeper_computation_a_defense_asks_for_is_charged(parts):
    plain, _, served = respond(parts)
    asked, counter, _ = respond(parts, ReadsLastExit())
    k, n = served.num_exits, len(asked.exits)
    np.testing.assert_array_equal(asked.exits, plain.exits)  # same answers ...
    np.testing.assert_array_equal(asked.probs, plain.probs)
    np.testing.assert_array_equal(counter.rows, np.full(k, n))  # ... every query to the end
    np.testing.assert_array_equal(asked.depth, np.full(n, k - 1))
    np.testing.assert_allclose(asked.cost_fraction, 1.0)
    np.testing.assert_allclose(asked.latency_s, CLEAN.base_s + CLEAN.full_s)


def test_only_the_rows_a_defense_asks_for_are_deepened(parts):
    response, counter, served = respond(parts, ReadsOneRow())
    n = len(response.exits)
    np.testing.assert_array_equal(response.exits, np.zeros(n, dtype=np.int64))
    np.testing.assert_array_equal(response.depth, [1] + [0] * (n - 1))
    expected = np.zeros(served.num_exits, dtype=np.int64)
    expected[:2] = [n, 1]
    np.testing.assert_array_equal(counter.rows, expected)


def test_exit_noise_never_computes_past_the_exit_that_answers(parts):
    response, counter, served = respond(parts, ExitNoise(p=0.7))
    np.testing.assert_array_equal(response.depth, response.exits)
    np.testing.assert_array_equal(counter.rows, reached(response.exits, served.num_exits))


def test_under_live_timing_every_computed_stage_is_in_the_measured_latency(parts):
    """Each stage call sleeps: a query's latency is at least that per stage it computed."""
    live = LiveTiming(warmup_per_exit=2)
    plain, counter, served = respond(parts, timing=live, n=12, sleep_s=STAGE_SLEEP_S)
    np.testing.assert_array_equal(counter.rows, reached(plain.exits, served.num_exits))
    assert np.all(plain.latency_s >= STAGE_SLEEP_S * (plain.exits + 1))
    asked, _, _ = respond(parts, ReadsLastExit(), timing=live, n=12, sleep_s=STAGE_SLEEP_S)
    assert np.all(asked.latency_s >= STAGE_SLEEP_S * served.num_exits)


def test_a_backend_without_stages_charges_what_was_asked(victim):
    endpoint = tiny_endpoint(victim, ReadsLastExit(), timing=CLEAN)
    response = endpoint.respond(victim.data.attacker.x[:20])
    np.testing.assert_array_equal(response.depth, np.full(20, victim.model.num_exits - 1))
    np.testing.assert_allclose(response.latency_s, CLEAN.base_s + CLEAN.full_s)


def test_exits_cannot_be_computed_uncharged_after_the_batch_is_answered(parts):
    with pytest.raises(ComponentFailure, match=r"perturb_outputs.*only in choose_exits"):
        respond(parts, KeepsTheView())


def test_under_modelled_timing_a_lazy_batch_is_held_to_its_exit_independent_allowance(parts):
    """The real computation must not be a second channel: however shallow the exits, the
    response waits for the allowance of a full pass (here slowed to at least 5 ms)."""
    victim, served = parts
    endpoint = tiny_endpoint(victim, None, timing=CLEAN, served=served)
    batch_logits = served._batch_logits

    def slow_full_pass(x):
        time.sleep(0.005)
        return batch_logits(x)

    served._batch_logits = slow_full_pass
    try:
        x = victim.data.attacker.x[:16]
        allowance = endpoint._allowance.seconds(x)
        assert allowance >= 2 * 0.005
        start = time.perf_counter()
        response = endpoint.respond(x)
        assert time.perf_counter() - start >= allowance
    finally:
        del served._batch_logits
    assert served._batch_logits == batch_logits
    assert np.all(response.depth == response.exits)  # held, not computed deeper
