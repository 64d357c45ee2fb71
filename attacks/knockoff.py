"""Knockoff Nets-style function-only baseline (Orekondy et al., CVPR 2019).

Queries a random subset of the attacker's pool (the whole budget), distils a multi-exit
substitute of the victim's family on the returned outputs, and - knowing nothing of
the victim's output strategy - uses one default global ``max_prob`` threshold for every
exit. It copies the function, not the efficiency: the gap to the victim's exits is what
strategy-stealing attacks are measured against.
"""

from __future__ import annotations

from attacks.substitute import build_substitute, distill, query_pool
from harness.oracle import Oracle
from harness.protocol import Attack, AttackContext, StolenModel
from harness.strategy import OutputStrategy
from victims.policies import MaxProbPolicy


class KnockoffAttack(Attack):
    """Function-only baseline: distil on random pool queries, global threshold."""

    name = "knockoff"

    def __init__(self, epochs: int = 30, lr: float = 3e-3, batch_size: int = 64,
                 width: int = 32, architecture: str | None = None,
                 threshold: float = 0.9) -> None:
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.width = width
        self.architecture = architecture
        self.threshold = threshold

    def steal(self, oracle: Oracle, attacker_data, ctx: AttackContext) -> StolenModel:
        transcript = query_pool(oracle, attacker_data, ctx.budget, ctx.rng(0))
        num_exits = ctx.num_exits or 4
        model = build_substitute(ctx, self.architecture, num_exits, self.width, ctx.seed)
        distill(model, transcript, ctx.output, epochs=self.epochs, lr=self.lr,
                batch_size=self.batch_size, seed=ctx.seed, device=ctx.device)
        strategy = OutputStrategy(MaxProbPolicy(), (self.threshold,) * (num_exits - 1))
        return StolenModel(model=model.cpu().eval(), strategy=strategy,
                           diagnostics={"queries": len(transcript.x),
                                        "admitted": int(transcript.admitted.sum())})
