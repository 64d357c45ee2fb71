"""The built-in architectures as registered components (``harness list architectures``).

Each wraps one builder function and declares its knobs as parameters with
constraints, so ``victim.NAME.arch_params`` and an attack's ``architecture_params``
are checked before any work. Registered by :mod:`victims.plugin`; victims and
attacks reach them by name through their context, never through this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from harness.model import MultiExitNet
from harness.params import Interval, ListOf
from harness.protocol import Architecture, Normalization
from victims.architectures.mobilenet import build_mobilenet
from victims.architectures.resnet import blocks_per_stage, build_resnet56
from victims.architectures.small_cnn import build_small_cnn
from victims.architectures.vgg import build_vgg16_bn
from victims.architectures.wide_resnet import build_wide_resnet

EXIT_FRACTIONS = [ListOf(Interval("real", 0, 1, closed="neither"), min_len=1), None]
HEAD_POOL = [Interval("int", 1, 64)]


def _norm(normalization: Normalization | None) -> dict[str, Any]:
    if normalization is None:
        return {"mean": None, "std": None}
    mean, std = normalization
    return {"mean": list(mean), "std": list(std)}


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
        return build_small_cnn(input_shape, num_classes, num_exits, self.width,
                               convs_per_stage=self.convs_per_stage, head_pool=self.head_pool,
                               seed=seed, **_norm(normalization))


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
        return build_vgg16_bn(input_shape, num_classes, num_exits, width_mult=self.width_mult,
                              dropout=self.dropout, exit_fractions=self.exit_fractions,
                              head_pool=self.head_pool, seed=seed, **_norm(normalization))


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
        return build_resnet56(input_shape, num_classes, num_exits, depth=self.depth,
                              width=self.width, exit_fractions=self.exit_fractions,
                              head_pool=self.head_pool, seed=seed, **_norm(normalization))


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
        return build_mobilenet(input_shape, num_classes, num_exits, width_mult=self.width_mult,
                               exit_fractions=self.exit_fractions, head_pool=self.head_pool,
                               seed=seed, **_norm(normalization))


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
        return build_wide_resnet(input_shape, num_classes, num_exits, depth=self.depth,
                                 widen=self.widen, dropout=self.dropout,
                                 exit_fractions=self.exit_fractions, head_pool=self.head_pool,
                                 seed=seed, **_norm(normalization))


BUILTIN_ARCHITECTURES: tuple[type[Architecture], ...] = (
    SmallCNN, VGG16BN, ResNet56, MobileNet, WideResNet)
CIFAR_ARCHITECTURES: tuple[type[Architecture], ...] = (VGG16BN, ResNet56, MobileNet, WideResNet)
"""SDN's four CIFAR families (each becomes a ``<dataset>_<name>`` victim)."""
