"""Multi-exit MobileNet (v1, Howard et al. 2017) for CIFAR-sized inputs, as in SDN.

A conv3x3-BN-ReLU stem with 32 channels (stride 1), then thirteen depthwise-separable
units (depthwise conv3x3-BN-ReLU, pointwise conv1x1-BN-ReLU) following
:data:`MOBILENET_CONFIG`, global average pooling and a linear classifier. Every
channel count is scaled by ``width_mult``. Internal exits go between units at even
FLOP fractions (:mod:`harness.nn.exits`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from harness.errors import ConfigError
from harness.model import MultiExitNet
from harness.nn.blocks import pooled_linear_head, scaled
from harness.nn.exits import EXIT_FRACTIONS, HEAD_POOL, assemble, check_common
from harness.params import Interval
from harness.protocol import Architecture, Normalization

MOBILENET_CONFIG: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
"""``(output channels, stride)`` of each depthwise-separable unit (CIFAR variant)."""


def separable(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """Depthwise conv3x3-BN-ReLU followed by pointwise conv1x1-BN-ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in), nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class MobileNet(Architecture):
    """MobileNetV1 (CIFAR variant) of depthwise-separable units."""

    name = "mobilenet"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "width_mult": [Interval("real", 0, 64, closed="right")],
        "exit_fractions": EXIT_FRACTIONS,
        "head_pool": HEAD_POOL,
    }

    def __init__(self, width_mult: float = 1.0, exit_fractions: list[float] | None = None,
                 head_pool: int = 4) -> None:
        self.width_mult = width_mult
        self.exit_fractions = exit_fractions
        self.head_pool = head_pool

    def build(self, input_shape: Sequence[int], num_classes: int, num_exits: int, *,
              seed: int = 0, normalization: Normalization | None = None) -> MultiExitNet:
        mean, std = normalization if normalization is not None else (None, None)
        channels, _, _ = check_common(input_shape, num_classes, num_exits, "mobilenet")
        if self.width_mult <= 0:
            raise ConfigError(f"mobilenet: width_mult must be > 0, got {self.width_mult}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            c_in = scaled(32, self.width_mult)
            units: list[nn.Module] = [nn.Sequential(
                nn.Conv2d(channels, c_in, 3, padding=1, bias=False), nn.BatchNorm2d(c_in),
                nn.ReLU(inplace=True))]
            for c_out, stride in MOBILENET_CONFIG:
                c_out = scaled(c_out, self.width_mult)
                units.append(separable(c_in, c_out, stride))
                c_in = c_out
            net = assemble(units, lambda shape: pooled_linear_head(shape, num_classes), input_shape,
                           num_classes, num_exits, exit_fractions=self.exit_fractions,
                           head_pool=self.head_pool, mean=mean, std=std)
        return net
