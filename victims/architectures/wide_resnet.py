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

import torch
from torch import nn

from harness.errors import ConfigError
from harness.model import MultiExitNet
from harness.nn.exits import assemble, check_common
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


def build_wide_resnet(input_shape: Sequence[int], num_classes: int, num_exits: int = 7, *,
                      depth: int = 32, widen: int = 4, dropout: float = 0.3,
                      exit_fractions: Sequence[float] | None = None, head_pool: int = 4,
                      mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                      seed: int = 0) -> MultiExitNet:
    """WRN-``depth``-``widen`` (WRN-32-4 by default) with ``num_exits`` exits.

    Initialisation is deterministic for ``seed`` and leaves the global RNG untouched.
    """
    channels, _, _ = check_common(input_shape, num_classes, num_exits, "wide_resnet")
    n = blocks_per_stage(depth, "wide_resnet")
    if widen < 1:
        raise ConfigError(f"wide_resnet: widen must be >= 1, got {widen}")
    if not 0 <= dropout < 1:
        raise ConfigError(f"wide_resnet: dropout must be in [0, 1), got {dropout}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        units: list[nn.Module] = [nn.Conv2d(channels, 16, 3, padding=1, bias=False)]
        c_in = 16
        for stage in range(3):
            c_out = 16 * widen * 2 ** stage
            for i in range(n):
                units.append(WideBasic(c_in, c_out, 2 if stage > 0 and i == 0 else 1, dropout))
                c_in = c_out
        net = assemble(units, lambda shape: _classifier(shape, num_classes), input_shape,
                       num_classes, num_exits, exit_fractions=exit_fractions,
                       head_pool=head_pool, mean=mean, std=std)
    return net
