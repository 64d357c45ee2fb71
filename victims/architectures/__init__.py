"""Built-in multi-exit architectures, each a registered component (``harness list architectures``).

One module per family, its class both the component (parameters with constraints, so
``victim.NAME.arch_params`` and an attack's ``architecture_params`` are checked before any
work) and the builder (:meth:`~harness.protocol.Architecture.build`). Registered by
:mod:`victims.plugin`; victims and attacks reach them by name through their context.
"""

from __future__ import annotations

from harness.protocol import Architecture
from victims.architectures.mobilenet import MobileNet
from victims.architectures.resnet import ResNet56
from victims.architectures.small_cnn import SmallCNN
from victims.architectures.vgg import VGG16BN
from victims.architectures.wide_resnet import WideResNet

BUILTIN_ARCHITECTURES: tuple[type[Architecture], ...] = (
    SmallCNN, VGG16BN, ResNet56, MobileNet, WideResNet)
CIFAR_ARCHITECTURES: tuple[type[Architecture], ...] = (VGG16BN, ResNet56, MobileNet, WideResNet)
"""SDN's four CIFAR families (each becomes a ``<dataset>_<name>`` victim)."""

__all__ = [
    "BUILTIN_ARCHITECTURES",
    "CIFAR_ARCHITECTURES",
    "VGG16BN",
    "MobileNet",
    "ResNet56",
    "SmallCNN",
    "WideResNet",
]
