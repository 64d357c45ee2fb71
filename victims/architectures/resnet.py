"""Multi-exit CIFAR ResNet (He et al. 2016; ResNet-56 by default, as in SDN).

A conv3x3-BN-ReLU stem, then three stages of ``n = (depth - 2) / 6`` basic blocks with
``width``, ``2 width`` and ``4 width`` channels (stride 2 at the start of stages 2
and 3, 1x1 conv + BN shortcut when the shape changes), global average pooling and a
linear classifier. Each basic block is one placement unit, so internal exits land
between residual blocks at even FLOP fractions (:mod:`harness.nn.exits`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harness.errors import ConfigError
from harness.model import MultiExitNet
from harness.nn.blocks import pooled_linear_head
from harness.nn.exits import assemble, check_common


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


def build_resnet56(input_shape: Sequence[int], num_classes: int, num_exits: int = 7, *,
                   depth: int = 56, width: int = 16,
                   exit_fractions: Sequence[float] | None = None, head_pool: int = 4,
                   mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   seed: int = 0) -> MultiExitNet:
    """CIFAR ResNet-``depth`` (56 by default) with ``num_exits`` exits.

    Initialisation is deterministic for ``seed`` and leaves the global RNG untouched.
    """
    channels, _, _ = check_common(input_shape, num_classes, num_exits, "resnet56")
    n = blocks_per_stage(depth, "resnet56")
    if width < 1:
        raise ConfigError(f"resnet56: width must be >= 1, got {width}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        units: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True))]
        c_in = width
        for stage in range(3):
            c_out = width * 2 ** stage
            for i in range(n):
                units.append(BasicBlock(c_in, c_out, 2 if stage > 0 and i == 0 else 1))
                c_in = c_out
        net = assemble(units, lambda shape: pooled_linear_head(shape, num_classes), input_shape,
                       num_classes, num_exits, exit_fractions=exit_fractions,
                       head_pool=head_pool, mean=mean, std=std)
    return net
