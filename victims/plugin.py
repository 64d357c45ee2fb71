"""Registers the built-in victims, datasets, architectures and serving backends.

This module is listed in :data:`harness.plugins.manager.BUILTIN_PLUGINS` and uses exactly the
hooks a third-party plugin uses.
"""

from __future__ import annotations

import harness


@harness.hookimpl
def harness_register_datasets(register):
    from victims.datasets import BUILTIN_DATASETS

    for source in BUILTIN_DATASETS:
        register(source)


@harness.hookimpl
def harness_register_victims(register):
    from victims.zoo import BUILTIN_VICTIMS
    from victims.zoo_cifar import CIFAR_VICTIMS
    from victims.zoo_stress import STRESS_VICTIMS

    for victim in (*BUILTIN_VICTIMS, *STRESS_VICTIMS, *CIFAR_VICTIMS):
        register(victim)


@harness.hookimpl
def harness_register_architectures(register):
    from victims.architectures import BUILTIN_ARCHITECTURES

    for architecture in BUILTIN_ARCHITECTURES:
        register(architecture)


@harness.hookimpl
def harness_register_backends(register):
    from victims.serving import BUILTIN_BACKENDS

    for backend in BUILTIN_BACKENDS:
        register(backend)
