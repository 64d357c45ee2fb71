"""Name -> builder registry of the CIFAR-style multi-exit architectures (SDN's four)."""

from __future__ import annotations

from collections.abc import Callable

from harness.errors import UnknownComponentError
from harness.model import MultiExitNet
from victims.architectures.mobilenet import build_mobilenet
from victims.architectures.resnet import build_resnet56
from victims.architectures.vgg import build_vgg16_bn
from victims.architectures.wide_resnet import build_wide_resnet

ARCHITECTURES: dict[str, Callable[..., MultiExitNet]] = {
    "vgg16_bn": build_vgg16_bn,
    "resnet56": build_resnet56,
    "mobilenet": build_mobilenet,
    "wide_resnet": build_wide_resnet,
}
"""Each builder takes ``(input_shape, num_classes, num_exits=7, **knobs)``."""


def get_architecture(name: str) -> Callable[..., MultiExitNet]:
    """The builder registered as ``name``; unknown names list the available ones."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UnknownComponentError(
            f"unknown architecture {name!r}; available: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
