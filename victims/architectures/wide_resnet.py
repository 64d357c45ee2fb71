"""Multi-exit Wide ResNet (Zagoruyko & Komodakis 2016); WRN-32-4 by default, as in SDN.

A conv3x3 stem with 16 channels, then three stages of ``n = (depth - 2) / 6``
pre-activation wide basic blocks (BN-ReLU-conv3x3-dropout-BN-ReLU-conv3x3, 1x1 conv
shortcut when the shape changes) with ``16 widen``, ``32 widen`` and ``64 widen``
channels, then BN-ReLU, global average pooling and a linear classifier. Depth counts
as in SDN's WRN-32-4 (5 blocks per stage: 30 convs + stem + classifier). Internal
exits go between blocks at even FLOP fractions (:mod:`harness.nn.exits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from harness.errors import ConfigError
from harness.model import MultiExitNet
from harness.nn.exits import EXIT_FRACTIONS, HEAD_POOL, assemble, check_common
from harness.params import Interval
from harness.protocol import Architecture, Normalization
from victims.architectures.resnet import blocks_per_stage


class WideBasic(nn.Module):
    """Pre-activation wide basic block with optional dropout between the convs."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.Dropout(dropout),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def _classifier(shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return nn.Sequential(nn.BatchNorm2d(shape[0]), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(shape[0], num_classes))


class WideResNet(Architecture):
    """Wide ResNet WRN-depth-widen (WRN-32-4 by default)."""

    name = "wide_resnet"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "depth": [Interval("int", 8, 1000)],
        "widen": [Interval("int", 1, 64)],
        "dropout": [Interval("real", 0, 1, closed="left")],
        "exit_fractions": EXIT_FRACTIONS,
        "head_pool": HEAD_POOL,
    }

    def __init__(self, depth: int = 32, widen: int = 4, dropout: float = 0.3,
                 exit_fractions: list[float] | None = None, head_pool: int = 4) -> None:
        self.depth = depth
        self.widen = widen
        self.dropout = dropout
        self.exit_fractions = exit_fractions
        self.head_pool = head_pool

    def validate(self, registry=None) -> None:
        super().validate(registry)
        blocks_per_stage(self.depth, self.name)

    def build(self, input_shape: Sequence[int], num_classes: int, num_exits: int, *,
              seed: int = 0, normalization: Normalization | None = None) -> MultiExitNet:
        mean, std = normalization if normalization is not None else (None, None)
        channels, _, _ = check_common(input_shape, num_classes, num_exits, "wide_resnet")
        n = blocks_per_stage(self.depth, "wide_resnet")
        if self.widen < 1:
            raise ConfigError(f"wide_resnet: widen must be >= 1, got {self.widen}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"wide_resnet: dropout must be in [0, 1), got {self.dropout}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            units: list[nn.Module] = [nn.Conv2d(channels, 16, 3, padding=1, bias=False)]
            c_in = 16
            for stage in range(3):
                c_out = 16 * self.widen * 2 ** stage
                for i in range(n):
                    units.append(WideBasic(c_in, c_out, 2 if stage > 0 and i == 0 else 1, self.dropout))
                    c_in = c_out
            net = assemble(units, lambda shape: _classifier(shape, num_classes), input_shape,
                           num_classes, num_exits, exit_fractions=self.exit_fractions,
                           head_pool=self.head_pool, mean=mean, std=std)
        return net
