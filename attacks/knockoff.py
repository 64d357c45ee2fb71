"""Knockoff Nets (Orekondy et al., CVPR 2019): distil a substitute on pool queries.

``sampling=random`` draws the whole budget uniformly from the attacker's pool (then the
attack equals ``function_only``). ``sampling=adaptive`` (default) is the paper's
adaptive strategy (:mod:`attacks.knockoff_bandit`): the pool is split into
``num_clusters`` k-means clusters (scikit-learn, seeded), the actions of a gradient
bandit with step ``alpha``; the budget is spent in ``rounds`` equal batches, each query's
cluster drawn from the current policy and its input uniformly among that cluster's
not-yet-queried members. After each batch every answer's reward updates the policy,
and the *interim* substitute (whose cross-entropy is the ``loss`` reward) is trained
``round_epochs`` more epochs on all answers so far through the shared trainer.
``rewards`` picks ``all`` (the paper's sum, here their normalised mean) or one of
``certainty``, ``diversity`` and ``loss``; with ``output=label`` ``all`` means
diversity and loss, and ``certainty`` is refused (a ConfigError naming the attack).

Either way the final substitute is trained afresh for ``epochs`` on every answer
(probabilities, or labels with ``output=label``), and its strategy is one global
``max_prob`` threshold (:mod:`attacks.global_threshold`; common pieces in
:mod:`attacks.baseline`). Under a threat model that hides them the substitute has
:data:`attacks.baseline.DEFAULT_NUM_EXITS` exits and is a ``small_cnn``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.cluster import KMeans

from attacks.baseline import COMMON_CONSTRAINTS, BaselineAttack
from attacks.knockoff_bandit import (
    REWARDS,
    BanditState,
    RewardScale,
    as_distributions,
    raw_rewards,
    used_rewards,
)
from attacks.substitute import Transcript, concat_transcripts, query_inputs, query_pool
from harness.model import MultiExitNet, exit_probabilities
from harness.params import Interval, Options
from harness.protocol import AttackContext, OracleHandle, StolenModel

SAMPLING = ("random", "adaptive")


def pool_clusters(pool: np.ndarray, num_clusters: int, seed: int) -> np.ndarray:
    """k-means cluster of every pool input (flattened), seeded; at most one per input."""
    flat = np.asarray(pool, dtype=np.float64).reshape(len(pool), -1)
    k = max(1, min(int(num_clusters), len(np.unique(flat, axis=0))))
    return KMeans(n_clusters=k, random_state=int(seed), n_init=1).fit_predict(flat)


class KnockoffAttack(BaselineAttack):
    """Knockoff Nets: random or bandit-adaptive pool queries, distillation, global threshold."""

    name = "knockoff"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **COMMON_CONSTRAINTS,
        "sampling": [Options(*SAMPLING)],
        "rewards": [Options("all", *REWARDS)],
        "num_clusters": [Interval("int", 1, 100_000)],
        "rounds": [Interval("int", 1, 100_000)],
        "alpha": [Interval("real", 0, None, closed="neither")],
        "round_epochs": [Interval("int", 0, 100_000)],
    }

    def __init__(self, sampling: str = "adaptive", rewards: str = "all", num_clusters: int = 10,
                 rounds: int = 5, alpha: float = 0.5, round_epochs: int = 3, epochs: int = 15,
                 lr: float = 3e-3, batch_size: int = 64, architecture: str | None = None,
                 architecture_params: dict | None = None, max_drop: float = 0.01,
                 threshold: float | None = None, holdout: float = 0.0,
                 patience: int = 0) -> None:
        self.sampling = sampling
        self.rewards = rewards
        self.num_clusters = num_clusters
        self.rounds = rounds
        self.alpha = alpha
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

    def steal(self, oracle: OracleHandle, attacker_data, ctx: AttackContext) -> StolenModel:
        pool = np.asarray(attacker_data)
        start = oracle.queries_used
        budget = self.available_budget(oracle, ctx)
        if self.sampling == "random":
            rows = query_pool(oracle, pool, budget, ctx.rng(0))
            return self.finish(rows, ctx, oracle.queries_used - start, {"sampling": "random"})
        try:
            kinds = used_rewards(self.rewards, ctx.output)
        except ValueError as exc:
            raise self.fail(str(exc)) from None
        rows, notes = self._adaptive(oracle, pool, ctx, kinds, budget)
        return self.finish(rows, ctx, oracle.queries_used - start,
                           {"sampling": "adaptive", "rewards": list(kinds), **notes})

    def _adaptive(self, oracle: OracleHandle, pool: np.ndarray, ctx: AttackContext,
                  kinds: tuple[str, ...], budget: int) -> tuple[Transcript, dict[str, Any]]:
        """Query ``budget`` inputs in rounds by the bandit policy; (all rows, diagnostics)."""
        clusters = pool_clusters(pool, self.num_clusters, ctx.seed)
        k = int(clusters.max()) + 1
        members = [np.flatnonzero(clusters == c) for c in range(k)]
        unused = np.ones(len(pool), dtype=bool)
        rng = ctx.rng(0)
        state, scale = BanditState.initial(k), RewardScale.empty(len(kinds))
        interim = self.new_substitute(ctx)
        parts: list[Transcript] = []
        answers: list[np.ndarray] = []
        per_round = -(-budget // self.rounds)
        rewards_seen: list[float] = []
        for r in range(self.rounds):
            n = min(per_round, budget - sum(len(p.x) for p in parts))
            if n <= 0:
                break
            actions = rng.choice(k, size=n, p=state.policy())
            idx = np.array([self._draw(members[a], unused, rng) for a in actions])
            part = query_inputs(oracle, pool[idx])
            parts.append(part)
            ok = np.asarray(part.admitted, dtype=bool)
            victim = as_distributions(np.asarray(part.outputs)[ok], ctx.num_classes)
            mean = np.concatenate(answers).mean(axis=0) if answers else victim.mean(axis=0)
            raw = raw_rewards(victim, self._substitute_probs(interim, part.x[ok], ctx),
                              mean, kinds) if len(victim) else np.zeros((0, len(kinds)))
            for action, reward in zip(actions[ok], raw, strict=True):
                scale = scale.observe(reward)
                value = scale.normalise(reward)
                rewards_seen.append(value)
                state = state.update(int(action), value, self.alpha)
            answers.append(victim)
            if r < self.rounds - 1 and self.round_epochs > 0:
                self.fit(interim, concat_transcripts(parts), ctx, self.round_epochs,
                         ctx.seed + 1 + r, f"interim round {r + 1}", early_stopping=False)
        notes = {"clusters": k, "rounds_run": len(parts),
                 "final_policy": [round(float(p), 6) for p in state.policy()],
                 "mean_reward": float(np.mean(rewards_seen)) if rewards_seen else None}
        return concat_transcripts(parts), notes

    @staticmethod
    def _draw(member: np.ndarray, unused: np.ndarray, rng: np.random.Generator) -> int:
        """A not-yet-queried input of the cluster (any of its inputs once all were)."""
        fresh = member[unused[member]]
        i = int(rng.choice(fresh if len(fresh) else member))
        unused[i] = False
        return i

    @staticmethod
    def _substitute_probs(model: MultiExitNet, x: np.ndarray, ctx: AttackContext) -> np.ndarray:
        """The interim substitute's final-exit probabilities (the loss reward's ``q``)."""
        return exit_probabilities(model, x, ctx.device)[-1]
