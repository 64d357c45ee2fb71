"""Multi-exit architectures (add one import line per architecture family)."""

from __future__ import annotations

from victims.architectures.cifar import ARCHITECTURES, get_architecture
from victims.architectures.small_cnn import build_small_cnn

__all__ = ["ARCHITECTURES", "build_small_cnn", "get_architecture"]
