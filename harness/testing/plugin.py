"""Pytest fixtures of the kit: add ``pytest_plugins = ["harness.testing.plugin"]`` to a conftest.

``harness_registry`` (every installed plugin), ``tiny_victim`` (untrained, random data),
``trained_tiny_victim`` (a few epochs on the embedded digits dataset) and
``make_tiny_oracle(budget, output="probs", defense=None, truth=False, seed=0)`` and
``harness_env`` (:class:`harness.testing.pytester.HarnessEnv` in a temporary folder).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.plugins.registry import Registry
from harness.protocol import AttackContext, TrainedVictim
from harness.serving.oracle import Oracle
from harness.testing.fixtures import default_registry, tiny_oracle, tiny_victim
from harness.testing.pytester import HarnessEnv


@pytest.fixture(scope="session")
def harness_registry() -> Registry:
    return default_registry()


@pytest.fixture(scope="session", name="tiny_victim")
def tiny_victim_fixture(harness_registry: Registry) -> TrainedVictim:
    """An untrained 3-exit victim on random 1x8x8 data, exits spread evenly."""
    return tiny_victim(registry=harness_registry)


@pytest.fixture(scope="session")
def trained_tiny_victim(harness_registry: Registry) -> TrainedVictim:
    """A 3-exit width-8 victim trained 4 epochs on digits, exits spread over the pool."""
    digits = harness_registry.get("dataset", "digits").cls().load(None)
    return tiny_victim(digits, epochs=4, registry=harness_registry, name="tiny_digits")


@pytest.fixture
def make_tiny_oracle(trained_tiny_victim: TrainedVictim, harness_registry: Registry
                     ) -> Callable[..., tuple[Oracle, AttackContext]]:
    """``make_tiny_oracle(budget, output="probs", defense=None, truth=False, seed=0)``."""

    def make(budget: int, output: str = "probs", truth: bool = False, seed: int = 0,
             defense=None) -> tuple[Oracle, AttackContext]:
        return tiny_oracle(trained_tiny_victim, budget, output=output, defense=defense,
                           seed=seed, truth=truth, registry=harness_registry)

    return make


@pytest.fixture
def harness_env(tmp_path) -> HarnessEnv:
    """A temporary site directory for plugins and a runner of the ``harness`` CLI."""
    return HarnessEnv(tmp_path / "harness-env")
