"""Multi-exit VGG-16 with batch norm for CIFAR-sized inputs (as in SDN, Kaya et al. 2019).

Thirteen conv3x3-BN-ReLU units (five of them followed by a 2x2 max-pool, ``ceil_mode``
so 28x28 inputs work too), then the classifier FC-512, FC-512, FC-classes with dropout.
Internal exits are placed at even FLOP fractions by :mod:`harness.nn.exits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from harness.errors import ConfigError
from harness.model import MultiExitNet
from harness.nn.blocks import scaled
from harness.nn.exits import EXIT_FRACTIONS, HEAD_POOL, assemble, check_common
from harness.params import Interval
from harness.protocol import Architecture, Normalization

VGG16_CONFIG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                       512, 512, 512, "M", 512, 512, 512, "M")
"""Output channels of each conv; ``"M"`` is a 2x2 max-pool after the previous conv."""


def _conv_units(in_channels: int, width_mult: float) -> list[nn.Module]:
    units: list[nn.Module] = []
    c_in = in_channels
    for item in VGG16_CONFIG:
        if item == "M":
            units[-1].append(nn.MaxPool2d(2, ceil_mode=True))
            continue
        c_out = scaled(int(item), width_mult)
        units.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)))
        c_in = c_out
    return units


def _classifier(shape: tuple[int, ...], hidden: int, num_classes: int,
                dropout: float) -> nn.Module:
    features = shape[0] * shape[1] * shape[2]
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


class VGG16BN(Architecture):
    """VGG-16 with batch norm (SDN's CIFAR variant), exits at even FLOP fractions."""

    name = "vgg16_bn"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "width_mult": [Interval("real", 0, 64, closed="right")],
        "dropout": [Interval("real", 0, 1, closed="left")],
        "exit_fractions": EXIT_FRACTIONS,
        "head_pool": HEAD_POOL,
    }

    def __init__(self, width_mult: float = 1.0, dropout: float = 0.5,
                 exit_fractions: list[float] | None = None, head_pool: int = 4) -> None:
        self.width_mult = width_mult
        self.dropout = dropout
        self.exit_fractions = exit_fractions
        self.head_pool = head_pool

    def build(self, input_shape: Sequence[int], num_classes: int, num_exits: int, *,
              seed: int = 0, normalization: Normalization | None = None) -> MultiExitNet:
        mean, std = normalization if normalization is not None else (None, None)
        channels, _, _ = check_common(input_shape, num_classes, num_exits, "vgg16_bn")
        if self.width_mult <= 0:
            raise ConfigError(f"vgg16_bn: width_mult must be > 0, got {self.width_mult}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"vgg16_bn: dropout must be in [0, 1), got {self.dropout}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            units = _conv_units(channels, self.width_mult)
            hidden = scaled(512, self.width_mult)
            net = assemble(units, lambda shape: _classifier(shape, hidden, num_classes, self.dropout),
                           input_shape, num_classes, num_exits, exit_fractions=self.exit_fractions,
                           head_pool=self.head_pool, mean=mean, std=std)
        return net
