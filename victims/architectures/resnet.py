"""Multi-exit CIFAR ResNet (He et al. 2016; ResNet-56 by default, as in SDN).

A conv3x3-BN-ReLU stem, then three stages of ``n = (depth - 2) / 6`` basic blocks with
``width``, ``2 width`` and ``4 width`` channels (stride 2 at the start of stages 2
and 3, 1x1 conv + BN shortcut when the shape changes), global average pooling and a
linear classifier. Each basic block is one placement unit, so internal exits land
between residual blocks at even FLOP fractions (:mod:`harness.nn.exits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from harness.errors import ConfigError
from harness.model import MultiExitNet
from harness.nn.blocks import pooled_linear_head
from harness.nn.exits import EXIT_FRACTIONS, HEAD_POOL, assemble, check_common
from harness.params import Interval
from harness.protocol import Architecture, Normalization


class BasicBlock(nn.Module):
    """Two conv3x3-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def blocks_per_stage(depth: int, arch: str, offset: int = 2) -> int:
    """``(depth - offset) / 6`` basic blocks per stage, or a clear error."""
    if depth < offset + 6 or (depth - offset) % 6:
        valid = ", ".join(str(offset + 6 * n) for n in range(1, 6))
        raise ConfigError(f"{arch}: depth must be {offset} + 6n (3 stages of n two-conv "
                          f"blocks), e.g. {valid}, ...; got {depth}")
    return (depth - offset) // 6


class ResNet56(Architecture):
    """CIFAR ResNet (depth 6n + 2; ResNet-56 by default), exits between residual blocks."""

    name = "resnet56"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "depth": [Interval("int", 8, 1000)],
        "width": [Interval("int", 1, 4096)],
        "exit_fractions": EXIT_FRACTIONS,
        "head_pool": HEAD_POOL,
    }

    def __init__(self, depth: int = 56, width: int = 16,
                 exit_fractions: list[float] | None = None, head_pool: int = 4) -> None:
        self.depth = depth
        self.width = width
        self.exit_fractions = exit_fractions
        self.head_pool = head_pool

    def validate(self, registry=None) -> None:
        super().validate(registry)
        blocks_per_stage(self.depth, self.name)

    def build(self, input_shape: Sequence[int], num_classes: int, num_exits: int, *,
              seed: int = 0, normalization: Normalization | None = None) -> MultiExitNet:
        mean, std = normalization if normalization is not None else (None, None)
        channels, _, _ = check_common(input_shape, num_classes, num_exits, "resnet56")
        n = blocks_per_stage(self.depth, "resnet56")
        if self.width < 1:
            raise ConfigError(f"resnet56: width must be >= 1, got {self.width}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            units: list[nn.Module] = [nn.Sequential(
                nn.Conv2d(channels, self.width, 3, padding=1, bias=False), nn.BatchNorm2d(self.width),
                nn.ReLU(inplace=True))]
            c_in = self.width
            for stage in range(3):
                c_out = self.width * 2 ** stage
                for i in range(n):
                    units.append(BasicBlock(c_in, c_out, 2 if stage > 0 and i == 0 else 1))
                    c_in = c_out
            net = assemble(units, lambda shape: pooled_linear_head(shape, num_classes), input_shape,
                           num_classes, num_exits, exit_fractions=self.exit_fractions,
                           head_pool=self.head_pool, mean=mean, std=std)
        return net
