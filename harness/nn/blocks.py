"""Building blocks shared by multi-exit architectures (victims' and attackers' alike).

:class:`Normalize` keeps inputs in the dataset's range and normalises inside the
network; :func:`conv_bn_relu` is the usual conv3x3-BatchNorm-ReLU unit;
:class:`InternalClassifier` is SDN's exit head; :func:`pooled_linear_head` the final
classifier of ResNet and MobileNet; :func:`init_weights` SDN/ResNet initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` with fixed (non-trainable) statistics."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError("normalisation needs one positive std per mean")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    """conv3x3 (no bias) - BatchNorm - ReLU, as a list of layers to splice into a block."""
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


class InternalClassifier(nn.Module):
    """SDN head: mixed max/avg pooling to about ``pool x pool``, then one linear layer.

    The pooling kernel is fixed at build time (``side // pool``) rather than adaptive,
    so the head exports to ONNX for any feature-map size. The mix weight
    ``sigmoid(alpha)`` is learned, as in SDN.
    """

    def __init__(self, channels: int, size: tuple[int, int], num_classes: int,
                 pool: int = 4) -> None:
        super().__init__()
        side = min(size)
        kernel = max(1, side // max(1, min(pool, side)))
        self.max_pool = nn.MaxPool2d(kernel, stride=kernel)
        self.avg_pool = nn.AvgPool2d(kernel, stride=kernel)
        self.alpha = nn.Parameter(torch.zeros(1))
        self.linear = nn.Linear(channels * (size[0] // kernel) * (size[1] // kernel), num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(self.alpha)
        pooled = a * self.max_pool(h) + (1 - a) * self.avg_pool(h)
        return self.linear(torch.flatten(pooled, 1))


def init_weights(model: nn.Module) -> None:
    """He init for convs, unit BatchNorm, small-normal linears (uses the current RNG)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def pooled_linear_head(shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Global average pooling + linear: the final classifier of ResNet and MobileNet."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(shape[0], num_classes))


def scaled(channels: int, mult: float) -> int:
    """``channels * mult`` rounded, at least 1."""
    return max(1, math.floor(channels * mult + 0.5))
