"""The kit's fixtures (tiny victim, tiny oracle, harness_env) for every test, and ``victim``.

Torch runs single-threaded in the test process: the tests' networks are tiny, and on a
2-core machine intra-op threads only contend (a tiny forward pass took 7 ms with one
thread and 60 ms with two under load). Worker processes set their own threads.
"""

import pytest
import torch

from harness.protocol import TrainedVictim
from harness.testing import tiny_victim as make_tiny_victim

pytest_plugins = ["harness.testing.plugin"]

torch.set_num_threads(1)


def make_victim(name: str = "tiny", seed: int = 0) -> TrainedVictim:
    """The kit's untrained tiny victim (3 exits, 1x8x8 random data, exits spread)."""
    return make_tiny_victim(name=name, seed=seed)


@pytest.fixture(scope="session")
def victim(tiny_victim) -> TrainedVictim:
    """The kit's tiny victim, shared by the serving and timing tests."""
    return tiny_victim
