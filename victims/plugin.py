"""Registers the built-in victims, datasets, exit policies and serving backends.

This module is listed in :data:`harness.plugins.BUILTIN_PLUGINS` and uses exactly the
hooks a third-party plugin uses.
"""

from __future__ import annotations

import harness
from victims.policies import EntropyPolicy, MaxProbPolicy


@harness.hookimpl
def harness_register_exit_policies(register):
    register(MaxProbPolicy)
    register(EntropyPolicy)


@harness.hookimpl
def harness_register_datasets(register):
    from victims.datasets import BUILTIN_DATASETS

    for source in BUILTIN_DATASETS:
        register(source)


@harness.hookimpl
def harness_register_victims(register):
    from victims.zoo import BUILTIN_VICTIMS
    from victims.zoo_cifar import CIFAR_VICTIMS

    for victim in (*BUILTIN_VICTIMS, *CIFAR_VICTIMS):
        register(victim)


@harness.hookimpl
def harness_register_backends(register):
    from victims.serving import BUILTIN_BACKENDS

    for backend in BUILTIN_BACKENDS:
        register(backend)
