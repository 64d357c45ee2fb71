"""``activethief`` (Pal et al., AAAI 2020): pool-based active learning on top-1 labels.

1. A random initial set of ``seed_size`` pool inputs is queried.
2. ``rounds`` times: the interim substitute is trained ``round_epochs`` more epochs on
   every label so far (through the shared trainer), then the next batch (the rest of the
   budget split evenly over the rounds) is picked from the not-yet-queried pool by
   ``strategy``:

   * ``random``: uniformly;
   * ``uncertainty``: the highest entropy of the substitute's final-exit softmax;
   * ``kcenter``: k-center greedy (Sener & Savarese 2018) in the substitute's final-exit
     probability space, the space the paper uses: repeatedly the pool input farthest
     (Euclidean) from every input queried or picked so far.

The victim's answers are used as top-1 labels (argmax of probabilities; the label with
``output=label``), as in the paper. The interim substitute is fine-tuned across rounds
rather than retrained from scratch (cheaper; it only steers the selection); the final
substitute is trained afresh for ``epochs`` on every label, and its strategy is the
baselines' global threshold (:mod:`attacks.baseline`). When the pool runs out before the
budget, the attack stops there (``queries`` in diagnostics).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from attacks.baseline import COMMON_CONSTRAINTS, BaselineAttack
from attacks.substitute import Transcript, concat_transcripts, query_inputs
from harness.model import MultiExitNet, exit_probabilities
from harness.params import Interval, Options
from harness.protocol import AttackContext, OracleHandle, StolenModel

STRATEGIES = ("random", "uncertainty", "kcenter")


def entropy(probs: np.ndarray) -> np.ndarray:
    """Prediction entropy (nats) per row."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def kcenter_greedy(candidates: np.ndarray, centers: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` candidate rows picked greedily farthest from ``centers`` and from
    each other (ties to the lowest index)."""
    n = min(n, len(candidates))
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    d = np.full(len(candidates), np.inf)
    sq = (candidates ** 2).sum(axis=1)
    for start in range(0, len(centers), 1024):  # squared distances via one matmul per block
        block = centers[start:start + 1024]
        d2 = sq[:, None] + (block ** 2).sum(axis=1)[None, :] - 2.0 * candidates @ block.T
        d = np.minimum(d, np.maximum(d2, 0.0).min(axis=1))
    picked = []
    for _ in range(n):
        i = int(np.argmax(d))
        picked.append(i)
        d = np.minimum(d, ((candidates - candidates[i]) ** 2).sum(axis=1))
        d[i] = -np.inf
    return np.asarray(picked, dtype=np.int64)


class ActiveThiefAttack(BaselineAttack):
    """Active learning of a substitute on top-1 labels (random / uncertainty / k-center)."""

    name = "activethief"
    label_only = True
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **COMMON_CONSTRAINTS,
        "strategy": [Options(*STRATEGIES)],
        "seed_size": [Interval("int", 1, 10_000_000)],
        "rounds": [Interval("int", 0, 10_000)],
        "round_epochs": [Interval("int", 0, 100_000)],
    }

    def __init__(self, strategy: str = "kcenter", seed_size: int = 100, rounds: int = 4,
                 round_epochs: int = 5, epochs: int = 15, lr: float = 3e-3,
                 batch_size: int = 64, architecture: str | None = None,
                 architecture_params: dict | None = None, max_drop: float = 0.01,
                 threshold: float | None = None, holdout: float = 0.0,
                 patience: int = 0) -> None:
        self.strategy = strategy
        self.seed_size = seed_size
        self.rounds = rounds
        self.round_epochs = round_epochs
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.architecture = architecture
        self.architecture_params = architecture_params
        self.max_drop = max_drop
        self.threshold = threshold
        self.holdout = holdout
        self.patience = patience

    def select(self, model: MultiExitNet, pool: np.ndarray, unused: np.ndarray,
               queried: np.ndarray, n: int, ctx: AttackContext,
               rng: np.random.Generator) -> np.ndarray:
        """Pool indices of the next ``n`` queries among ``unused`` (``strategy``)."""
        free = np.flatnonzero(unused)
        n = min(n, len(free))
        if self.strategy == "random" or n == len(free):
            return np.sort(rng.choice(free, size=n, replace=False))
        probs = exit_probabilities(model, pool[free], ctx.device)[-1]
        if self.strategy == "uncertainty":
            return free[np.argsort(-entropy(probs), kind="stable")[:n]]
        centers = exit_probabilities(model, pool[queried], ctx.device)[-1]
        return free[kcenter_greedy(probs, centers, n)]

    def steal(self, oracle: OracleHandle, attacker_data, ctx: AttackContext) -> StolenModel:
        pool = np.asarray(attacker_data)
        start = oracle.queries_used
        budget = min(self.available_budget(oracle, ctx), len(pool))
        rng = ctx.rng(0)
        unused = np.ones(len(pool), dtype=bool)
        picked = np.sort(rng.choice(len(pool), size=min(self.seed_size, budget), replace=False))
        interim = self.new_substitute(ctx)
        parts: list[Transcript] = []
        per_round = -(-(budget - len(picked)) // self.rounds) if self.rounds else 0
        for r in range(self.rounds + 1):
            if len(picked) == 0:
                break
            unused[picked] = False
            parts.append(query_inputs(oracle, pool[picked]))
            spent = oracle.queries_used - start
            if r == self.rounds or spent >= budget:
                break
            self.fit(interim, concat_transcripts(parts), ctx, self.round_epochs,
                     ctx.seed + 1 + r, f"interim round {r + 1}", early_stopping=False)
            picked = self.select(interim, pool, unused, np.flatnonzero(~unused),
                                 min(per_round, budget - spent), ctx, rng)
        rows = concat_transcripts(parts)
        return self.finish(rows, ctx, oracle.queries_used - start,
                           {"strategy": self.strategy, "rounds_run": max(len(parts) - 1, 0),
                            "pool_exhausted": bool(not unused.any())})
