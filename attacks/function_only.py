"""``function_only``: plain distillation on random pool queries, the simplest reference.

Spends the whole budget on inputs drawn uniformly without replacement from the
attacker's pool (in one go, no rounds, no feedback), trains a multi-exit substitute on
the returned outputs (soft cross-entropy toward probabilities, cross-entropy on labels
with ``output=label``) and sets one global ``max_prob`` threshold by the rule of
:mod:`attacks.global_threshold`. It is ``knockoff`` with ``sampling=random``: every
difference between the two baselines' scores is the adaptive sampling's.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from attacks.baseline import COMMON_CONSTRAINTS, BaselineAttack
from attacks.substitute import query_pool
from harness.protocol import AttackContext, OracleHandle, StolenModel


class FunctionOnlyAttack(BaselineAttack):
    """Distil on random pool queries; one global threshold."""

    name = "function_only"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = dict(COMMON_CONSTRAINTS)

    def __init__(self, epochs: int = 15, lr: float = 3e-3, batch_size: int = 64,
                 architecture: str | None = None, architecture_params: dict | None = None,
                 max_drop: float = 0.01, threshold: float | None = None,
                 holdout: float = 0.0, patience: int = 0) -> None:
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.architecture = architecture
        self.architecture_params = architecture_params
        self.max_drop = max_drop
        self.threshold = threshold
        self.holdout = holdout
        self.patience = patience

    def steal(self, oracle: OracleHandle, attacker_data, ctx: AttackContext) -> StolenModel:
        start = oracle.queries_used
        budget = self.available_budget(oracle, ctx)
        rows = query_pool(oracle, np.asarray(attacker_data), budget, ctx.rng(0))
        return self.finish(rows, ctx, oracle.queries_used - start)
