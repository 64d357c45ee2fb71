"""Session fixtures for attack tests: a tiny trained digits victim served for an oracle."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from harness.nn.training import predict_exit_probs, train_multi_exit
from harness.plugins.manager import make_plugin_manager
from harness.plugins.registry import Registry
from harness.plugins.toolbox import Toolbox
from harness.protocol import AttackContext, Defense, ServedModel, TrainedVictim
from harness.serving.endpoint import Endpoint
from harness.serving.oracle import Oracle
from harness.strategy import MaxProbPolicy, OutputStrategy
from harness.timing.models import AnalyticTiming
from victims.architectures import build_small_cnn
from victims.datasets.digits import DigitsDataset
from victims.serving import TorchBackend

FAST = {"epochs": 3, "finetune_epochs": 2, "architecture_params": {"width": 8}, "batch_size": 64}
"""Attack parameters that keep one steal() well under a second or two."""


def spread_thresholds(per_exit_probs: list[np.ndarray], policy: MaxProbPolicy) -> tuple[float, ...]:
    """Thresholds that route about equal shares of the given inputs to every exit."""
    k_total = len(per_exit_probs)
    remaining = np.ones(len(per_exit_probs[0]), dtype=bool)
    thresholds = []
    for k in range(k_total - 1):
        score = policy.score(per_exit_probs[k])
        tau = float(np.quantile(score[remaining], 1.0 - 1.0 / (k_total - k)))
        thresholds.append(tau)
        remaining &= ~policy.fires(score, tau)
    return tuple(thresholds)


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The built-in components (no entry-point plugins)."""
    return Registry.from_manager(make_plugin_manager(load_entrypoints=False))


@pytest.fixture(scope="session")
def tiny_victim() -> TrainedVictim:
    """A 3-exit width-8 CNN on digits (4 epochs) with thresholds spreading the pool evenly."""
    data = DigitsDataset().load(None)
    model = build_small_cnn(data.input_shape, data.num_classes, num_exits=3, width=8, seed=0)
    train_multi_exit(model, data.train, epochs=4, lr=3e-3, batch_size=64, seed=0)
    policy = MaxProbPolicy()
    thresholds = spread_thresholds(predict_exit_probs(model, data.attacker.x), policy)
    return TrainedVictim("tiny_digits", model.eval(), OutputStrategy(policy, thresholds), data,
                         "small_cnn", "tiny")


@pytest.fixture(scope="session")
def served(tiny_victim: TrainedVictim, tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    return TorchBackend().load(tiny_victim, "cpu", tmp_path_factory.mktemp("serve"))


@pytest.fixture
def make_oracle(tiny_victim: TrainedVictim, served: ServedModel, registry: Registry
                ) -> Callable[..., tuple[Oracle, AttackContext]]:
    """``make_oracle(budget, output="probs", truth=False, seed=0)`` -> (oracle, ctx)."""

    def make(budget: int, output: str = "probs", truth: bool = False, seed: int = 0,
             defense: Defense | None = None) -> tuple[Oracle, AttackContext]:
        data = tiny_victim.data
        endpoint = Endpoint(served, tiny_victim.strategy, defense or Defense(), AnalyticTiming(),
                            np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2]),
                            num_classes=data.num_classes)
        oracle = Oracle(endpoint, budget, output, data.input_shape, data.input_range,
                        allow_truth=truth)
        ctx = AttackContext(seed=seed, device="cpu", budget=budget, output=output,
                            input_shape=data.input_shape, num_classes=data.num_classes,
                            input_range=data.input_range, num_exits=3,
                            victim_family="small_cnn", cache_dir=None,
                            toolbox=Toolbox(registry))
        return oracle, ctx

    return make
