"""In live timing a defense's own compute is part of the latency, and held responses are
really held: a client timing its round trip waits at least what the defense asked for."""

from __future__ import annotations

import time

import numpy as np
import pytest

from harness.stages import Defense, StageBatch
from harness.testing.fixtures import default_registry, tiny_endpoint, tiny_victim
from harness.timing.models import LiveTiming

WORK_S = 0.004
HOLD_S = 0.03


class SlowMonitor(Defense):
    """Spends ``WORK_S`` of real time deciding every batch (like PRADA's distance search)."""

    name = "slow_monitor"

    def __init__(self) -> None:
        pass

    def perturb_outputs(self, batch: StageBatch) -> np.ndarray:
        time.sleep(WORK_S)
        return batch.outputs


class Hold(Defense):
    """Holds every response to at least ``HOLD_S``."""

    name = "hold"

    def __init__(self) -> None:
        pass

    def shape_latency(self, batch: StageBatch) -> np.ndarray:
        return np.maximum(batch.latency_s, HOLD_S)


@pytest.fixture(scope="module")
def live_endpoint_parts(tmp_path_factory):
    registry = default_registry()
    victim = tiny_victim(registry=registry)
    served = registry.get("backend", "torch").cls().load(victim, "cpu",
                                                         tmp_path_factory.mktemp("cache"))
    return victim, served


def test_defense_compute_is_part_of_the_live_latency(live_endpoint_parts):
    victim, served = live_endpoint_parts
    endpoint = tiny_endpoint(victim, SlowMonitor(), timing=LiveTiming(warmup_per_exit=4),
                             served=served)
    response = endpoint.respond(victim.data.attacker.x[:1])
    assert response.latency_s[0] >= WORK_S


def test_held_response_is_really_held(live_endpoint_parts):
    victim, served = live_endpoint_parts
    endpoint = tiny_endpoint(victim, Hold(), timing=LiveTiming(warmup_per_exit=4), served=served)
    start = time.perf_counter()
    response = endpoint.respond(victim.data.attacker.x[:1])
    waited = time.perf_counter() - start
    assert response.latency_s[0] >= HOLD_S
    assert waited >= HOLD_S
