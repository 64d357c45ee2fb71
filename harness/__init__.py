"""Evaluation harness for output-strategy stealing on multi-exit networks.

The facade a plugin imports from::

    import harness
    from harness import Attack, Defense, Victim, StolenModel, OutputStrategy, MultiExitNet

    @harness.hookimpl
    def harness_register_defenses(register): ...

It re-exports the contract (component ABCs, data types, the defense stage batch, the
errors) and :func:`make_plugin_manager`. The layers live in the subpackages, bottom first
(``io``, the contract modules, ``plugins``, ``nn``, ``timing``, ``serving``, ``metrics``,
``cell``, ``isolation``, ``run``, ``board``, then ``cli`` and ``testing``); their order is
the contract ``tests/harness/test_import_contract.py`` enforces. Nothing inside the
harness imports this facade.
"""

from __future__ import annotations

import harness.kernels  # noqa: F401  (first: pins the CPU kernels before any tensor is computed)
from harness.components import Component
from harness.errors import (
    BudgetExhaustedError,
    CacheError,
    ComponentFailure,
    ConfigError,
    DatasetError,
    HarnessError,
    InvalidQueryError,
    PluginError,
    QueryError,
)
from harness.hookspecs import PROJECT_NAME, hookimpl
from harness.model import MultiExitNet
from harness.params import ComponentName, Interval, ListOf, Options
from harness.plugins.manager import make_plugin_manager
from harness.protocol import (
    Architecture,
    Attack,
    AttackContext,
    DatasetSource,
    DatasetSplits,
    ExitEstimate,
    ExitEstimator,
    OracleHandle,
    QueryResult,
    ServingBackend,
    Split,
    StolenModel,
    TrainedVictim,
    Victim,
    VictimContext,
)
from harness.stages import PROTOCOL_VERSION, Defense, ServerInfo, StageBatch
from harness.strategy import ExitPolicy, OutputStrategy
from harness.version import __version__

__all__ = [
    "PROJECT_NAME",
    "PROTOCOL_VERSION",
    "Architecture",
    "Attack",
    "AttackContext",
    "BudgetExhaustedError",
    "CacheError",
    "Component",
    "ComponentFailure",
    "ComponentName",
    "ConfigError",
    "DatasetError",
    "DatasetSource",
    "DatasetSplits",
    "Defense",
    "ExitEstimate",
    "ExitEstimator",
    "ExitPolicy",
    "HarnessError",
    "Interval",
    "InvalidQueryError",
    "ListOf",
    "MultiExitNet",
    "Options",
    "OracleHandle",
    "OutputStrategy",
    "PluginError",
    "QueryError",
    "QueryResult",
    "ServerInfo",
    "ServingBackend",
    "Split",
    "StageBatch",
    "StolenModel",
    "TrainedVictim",
    "Victim",
    "VictimContext",
    "__version__",
    "hookimpl",
    "make_plugin_manager",
]
