"""Built-in multi-exit architectures: builder functions and their registered components.

Add a family with a builder module and a component in :mod:`.registered`; victims and
attacks reach families by name through the registry (``harness_register_architectures``).
"""

from __future__ import annotations

from victims.architectures.registered import BUILTIN_ARCHITECTURES, CIFAR_ARCHITECTURES
from victims.architectures.small_cnn import build_small_cnn

__all__ = ["BUILTIN_ARCHITECTURES", "CIFAR_ARCHITECTURES", "build_small_cnn"]
