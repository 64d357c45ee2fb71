"""Multi-exit MobileNet (v1, Howard et al. 2017) for CIFAR-sized inputs, as in SDN.

A conv3x3-BN-ReLU stem with 32 channels (stride 1), then thirteen depthwise-separable
units (depthwise conv3x3-BN-ReLU, pointwise conv1x1-BN-ReLU) following
:data:`MOBILENET_CONFIG`, global average pooling and a linear classifier. Every
channel count is scaled by ``width_mult``. Internal exits go between units at even
FLOP fractions (:mod:`harness.nn.exits`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harness.errors import ConfigError
from harness.model import MultiExitNet
from harness.nn.blocks import pooled_linear_head, scaled
from harness.nn.exits import assemble, check_common

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


def build_mobilenet(input_shape: Sequence[int], num_classes: int, num_exits: int = 7, *,
                    width_mult: float = 1.0, exit_fractions: Sequence[float] | None = None,
                    head_pool: int = 4, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None, seed: int = 0) -> MultiExitNet:
    """MobileNetV1 (CIFAR) with ``num_exits`` exits; ``width_mult`` scales all widths.

    Initialisation is deterministic for ``seed`` and leaves the global RNG untouched.
    """
    channels, _, _ = check_common(input_shape, num_classes, num_exits, "mobilenet")
    if width_mult <= 0:
        raise ConfigError(f"mobilenet: width_mult must be > 0, got {width_mult}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        c_in = scaled(32, width_mult)
        units: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(channels, c_in, 3, padding=1, bias=False), nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True))]
        for c_out, stride in MOBILENET_CONFIG:
            c_out = scaled(c_out, width_mult)
            units.append(separable(c_in, c_out, stride))
            c_in = c_out
        net = assemble(units, lambda shape: pooled_linear_head(shape, num_classes), input_shape,
                       num_classes, num_exits, exit_fractions=exit_fractions,
                       head_pool=head_pool, mean=mean, std=std)
    return net
