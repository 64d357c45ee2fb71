"""Knockoff Nets-style function-only baseline (Orekondy et al., CVPR 2019).

Queries a random subset of the attacker's pool (the whole budget), distils a multi-exit
substitute (``architecture``, by default the victim's family) on the returned outputs,
and - knowing nothing of the victim's output strategy - uses one default global
``max_prob`` threshold for every exit. It copies the function, not the efficiency: the
gap to the victim's exits is what strategy-stealing attacks are measured against.

Under a threat model that hides them, the substitute has :data:`DEFAULT_NUM_EXITS` exits
(``threat.num_exits=hidden``; knockoff does not estimate exits) and is of family
``small_cnn`` (:data:`attacks.substitute.DEFAULT_ARCHITECTURE`, when
``threat.architecture=hidden`` and ``architecture`` is not set).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from attacks.substitute import distill, query_pool, substitute_architecture
from harness.components import check_nested
from harness.params import ComponentName, Interval
from harness.protocol import Attack, AttackContext, StolenModel
from harness.serving.oracle import Oracle
from harness.strategy import OutputStrategy

if TYPE_CHECKING:
    from harness.plugins.registry import Registry

DEFAULT_NUM_EXITS = 4
"""Exits of the substitute when the threat model hides the victim's number of exits."""


class KnockoffAttack(Attack):
    """Function-only baseline: distil on random pool queries, global threshold."""

    name = "knockoff"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "epochs": [Interval("int", 0, 100_000)],
        "lr": [Interval("real", 0, 1, closed="right")],
        "batch_size": [Interval("int", 1, 1_000_000)],
        "architecture": [ComponentName("architecture"), None],
        "architecture_params": [dict, None],
        "threshold": [Interval("real", 0, 1)],
    }

    def __init__(self, epochs: int = 30, lr: float = 3e-3, batch_size: int = 64,
                 architecture: str | None = None, architecture_params: dict | None = None,
                 threshold: float = 0.9) -> None:
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.architecture = architecture
        self.architecture_params = architecture_params
        self.threshold = threshold

    def validate(self, registry: Registry | None = None) -> None:
        super().validate(registry)
        if registry is not None and self.architecture is not None:
            check_nested(f"attack {self.name!r}", registry, "architecture", self.architecture,
                         self.architecture_params, "architecture_params")

    def steal(self, oracle: Oracle, attacker_data, ctx: AttackContext) -> StolenModel:
        transcript = query_pool(oracle, attacker_data, ctx.budget, ctx.rng(0))
        num_exits = ctx.num_exits or DEFAULT_NUM_EXITS
        architecture = substitute_architecture(self.architecture, ctx)
        model = ctx.new_network(num_exits, ctx.seed, architecture,
                                **(self.architecture_params or {}))
        distill(model, transcript, ctx.output, epochs=self.epochs, lr=self.lr,
                batch_size=self.batch_size, seed=ctx.seed, device=ctx.device)
        strategy = OutputStrategy(ctx.policy("max_prob"), (self.threshold,) * (num_exits - 1))
        return StolenModel(model=model.cpu().eval(), strategy=strategy,
                           diagnostics={"queries": len(transcript.x),
                                        "admitted": int(transcript.admitted.sum()),
                                        "substitute_architecture": architecture})
