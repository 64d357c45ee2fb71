"""A tiny 3-exit CNN victim on 1x8x8 inputs, with thresholds that spread the exits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from harness.model import MultiExitNet
from harness.protocol import DatasetSplits, Split, TrainedVictim
from harness.strategy import MaxProbPolicy, OutputStrategy

NUM_CLASSES = 10


def _head(channels: int) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, NUM_CLASSES))


def build_net(seed: int) -> MultiExitNet:
    """Random-weight 3-exit CNN; weights come from a seeded numpy generator."""
    blocks = [
        nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()),
    ]
    net = MultiExitNet(blocks, [_head(8), _head(16), _head(16)], (1, 8, 8), NUM_CLASSES)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for p in net.parameters():
            std = 2.0 / np.sqrt(np.prod(p.shape[1:])) if p.ndim > 1 else 0.1
            p.copy_(torch.from_numpy(rng.normal(0.0, std, p.shape).astype(np.float32)))
    return net.eval()


def _split(rng: np.random.Generator, n: int) -> Split:
    return Split(rng.uniform(0, 1, (n, 1, 8, 8)).astype(np.float32),
                 rng.integers(0, NUM_CLASSES, n).astype(np.int64))


def spread_strategy(net: MultiExitNet, x: np.ndarray) -> OutputStrategy:
    """Max-prob thresholds half-way between scores so about a third exits at each exit."""
    with torch.no_grad():
        probs = [torch.softmax(o.double(), 1).numpy() for o in net(torch.from_numpy(x))]
    thresholds = []
    for k, frac in ((0, 2 / 3), (1, 1 / 2)):
        s = np.sort(probs[k].max(axis=1))
        i = int(frac * len(s))
        thresholds.append(float((s[i - 1] + s[i]) / 2))
    return OutputStrategy(MaxProbPolicy(), tuple(thresholds))


def make_victim(name: str = "tiny", seed: int = 0) -> TrainedVictim:
    rng = np.random.default_rng([seed, 1])
    data = DatasetSplits(name="random", input_shape=(1, 8, 8), num_classes=NUM_CLASSES,
                         input_range=(0.0, 1.0), train=_split(rng, 16), val=_split(rng, 16),
                         attacker=_split(rng, 16), test=_split(rng, 60))
    net = build_net(seed)
    return TrainedVictim(name=name, model=net, strategy=spread_strategy(net, data.test.x),
                         data=data, family="tiny_cnn", weights_hash=f"hash{seed:04d}")


@pytest.fixture(scope="session")
def victim() -> TrainedVictim:
    return make_victim()
