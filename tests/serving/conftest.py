"""Serving tests use the kit's tiny victim (3 exits, 1x8x8 random data, exits spread)."""

from __future__ import annotations

import pytest

from harness.protocol import TrainedVictim
from harness.testing import tiny_victim


def make_victim(name: str = "tiny", seed: int = 0) -> TrainedVictim:
    return tiny_victim(name=name, seed=seed)


@pytest.fixture(scope="session")
def victim(tiny_victim) -> TrainedVictim:
    return tiny_victim
