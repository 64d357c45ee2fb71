"""``small_cnn``: a small SDN-style multi-exit CNN for 1x8x8, 1x28x28 and 3x32x32 inputs.

Stage ``k`` is ``convs_per_stage`` conv3x3-BatchNorm-ReLU layers followed, in non-final
stages while the feature map can still shrink to >= 2x2, by a 2x2 max-pool. Channels
double after each pool (``width * 2**min(pools so far, 3)``), so every stage adds a conv
block of similar cost and the exit costs grow clearly. Each exit head is an SDN-style
internal classifier: adaptive average pooling to ``head_pool x head_pool`` and one linear layer.
Optional input normalisation lives inside the first block, so inputs stay in the
dataset's range (e.g. [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from harness.model import MultiExitNet
from harness.nn.blocks import Normalize, conv_bn_relu
from harness.nn.exits import HEAD_POOL
from harness.params import Interval
from harness.protocol import Architecture, Normalization


def stage_plan(input_shape: tuple[int, ...], num_exits: int,
               width: int) -> list[tuple[int, int, bool]]:
    """``(in_channels, out_channels, pool_after)`` for each stage."""
    channels, height, wide = input_shape
    side = min(height, wide)
    plan = []
    c_in = channels
    pools = 0
    for k in range(num_exits):
        c_out = width * 2 ** min(pools, 3)
        pool = k < num_exits - 1 and side // 2 >= 2
        if pool:
            side //= 2
            pools += 1
        plan.append((c_in, c_out, pool))
        c_in = c_out
    return plan


class SmallCNN(Architecture):
    """SDN-style small CNN (conv-BN-ReLU stages, pooled-linear exit heads) for small inputs."""

    name = "small_cnn"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "width": [Interval("int", 1, 4096)],
        "convs_per_stage": [Interval("int", 1, 16)],
        "head_pool": HEAD_POOL,
    }

    def __init__(self, width: int = 32, convs_per_stage: int = 2, head_pool: int = 2) -> None:
        self.width = width
        self.convs_per_stage = convs_per_stage
        self.head_pool = head_pool

    def build(self, input_shape: Sequence[int], num_classes: int, num_exits: int, *,
              seed: int = 0, normalization: Normalization | None = None) -> MultiExitNet:
        mean, std = normalization if normalization is not None else (None, None)
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
        if (num_exits < 2 or num_classes < 2
                or min(self.width, self.convs_per_stage, self.head_pool) < 1):
            raise ValueError("need num_exits >= 2, num_classes >= 2 and positive width, "
                             "convs_per_stage and head_pool")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std for input normalisation, or neither")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            blocks, heads = [], []
            for k, (c_in, c_out, pool) in enumerate(stage_plan(shape, num_exits, self.width)):
                layers: list[nn.Module] = []
                if k == 0 and mean is not None and std is not None:
                    layers.append(Normalize(mean, std))
                layers += conv_bn_relu(c_in, c_out)
                for _ in range(self.convs_per_stage - 1):
                    layers += conv_bn_relu(c_out, c_out)
                if pool:
                    layers.append(nn.MaxPool2d(2))
                blocks.append(nn.Sequential(*layers))
                heads.append(nn.Sequential(nn.AdaptiveAvgPool2d(self.head_pool), nn.Flatten(),
                                           nn.Linear(c_out * self.head_pool * self.head_pool, num_classes)))
        return MultiExitNet(blocks, heads, shape, num_classes)
