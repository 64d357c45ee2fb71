"""What the function-stealing baselines share: substitute, training, strategy, diagnostics.

``knockoff``, ``jbda``, ``activethief`` and ``function_only`` differ in *which* inputs
they query and on which targets they train; everything else is common and lives here so
that differences between them come from the method, not the plumbing:

* the substitute: a multi-exit network of ``architecture`` (by default the victim's
  family; ``small_cnn`` when the threat model hides it) with the victim's number of exits,
  or :data:`DEFAULT_NUM_EXITS` when that is hidden (the baselines do not estimate exits);
* training: every pass goes through the shared trainer (:mod:`attacks.trainer`) with the
  SDN-weighted performance loss (:func:`attacks.substitute.distill`): soft cross-entropy
  toward returned probabilities, or cross-entropy on top-1 labels;
* the output strategy: one global ``max_prob`` threshold chosen on the attacker's own
  queries within ``max_drop`` of the final exit's fidelity (:mod:`attacks.global_threshold`),
  or a ``threshold`` fixed by the user;
* diagnostics: queries charged (``queries``, the oracle's count for this attack), rows
  admitted, the training report, the chosen threshold and the final-exit-only reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from attacks.global_threshold import global_strategy
from attacks.substitute import Transcript, distill, substitute_architecture, victim_labels
from attacks.trainer import TrainRecipe, TrainReport
from harness.components import check_nested
from harness.errors import BudgetExhaustedError, ConfigError
from harness.model import MultiExitNet
from harness.params import ComponentName, Interval
from harness.protocol import Attack, AttackContext, OracleHandle, StolenModel

if TYPE_CHECKING:
    from harness.plugins.registry import Registry

DEFAULT_NUM_EXITS = 4
"""Exits of the substitute when the threat model hides the victim's number of exits."""

STRATEGY_POLICY = "max_prob"
"""The victim-default policy a practitioner without the side channel thresholds."""

COMMON_CONSTRAINTS: dict[str, list[Any]] = {
    "epochs": [Interval("int", 0, 100_000)],
    "lr": [Interval("real", 0, 1, closed="right")],
    "batch_size": [Interval("int", 1, 1_000_000)],
    "architecture": [ComponentName("architecture"), None],
    "architecture_params": [dict, None],
    "max_drop": [Interval("real", 0, 1)],
    "threshold": [Interval("real", 0, 1), None],
    "holdout": [Interval("real", 0, 1, closed="left")],
    "patience": [Interval("int", 0, 100_000)],
}
"""Constraints of the parameters every baseline has (each adds its own)."""


class BaselineAttack(Attack):
    """Base of the function-stealing baselines; subclasses implement :meth:`steal`.

    Subclasses store (sklearn-style) at least ``epochs``, ``lr``, ``batch_size``,
    ``architecture``, ``architecture_params``, ``max_drop``, ``threshold``, ``holdout``
    and ``patience``.
    """

    epochs: int
    lr: float
    batch_size: int
    architecture: str | None
    architecture_params: dict | None
    max_drop: float
    threshold: float | None
    holdout: float
    patience: int
    label_only: ClassVar[bool] = False
    """Trains on top-1 labels whatever ``output`` is (jbda, activethief)."""

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"attack {self.name!r}: {message}")

    def validate(self, registry: Registry | None = None) -> None:
        super().validate(registry)
        if registry is not None and self.architecture is not None:
            check_nested(f"attack {self.name!r}", registry, "architecture", self.architecture,
                         self.architecture_params, "architecture_params")

    # -- pieces -----------------------------------------------------------------------
    def available_budget(self, oracle: OracleHandle, ctx: AttackContext) -> int:
        """Queries this attack may still make (``ctx.budget`` capped by what is left)."""
        left = min(ctx.budget, oracle.budget_left)
        if left <= 0:
            raise BudgetExhaustedError(f"attack {self.name!r}: no query budget left "
                                       f"({oracle.queries_used} of {oracle.budget} used)")
        return left

    def new_substitute(self, ctx: AttackContext) -> MultiExitNet:
        """A fresh substitute, seeded by the cell seed."""
        return ctx.new_network(ctx.num_exits or DEFAULT_NUM_EXITS, ctx.seed,
                               substitute_architecture(self.architecture, ctx),
                               **(self.architecture_params or {}))

    def recipe(self, ctx: AttackContext, epochs: int, seed: int, label: str,
               early_stopping: bool = True) -> TrainRecipe:
        """The shared trainer's recipe for one pass (interim passes skip early stopping)."""
        return TrainRecipe(epochs=epochs, lr=self.lr, batch_size=self.batch_size, seed=seed,
                           device=ctx.device, holdout=self.holdout if early_stopping else 0.0,
                           patience=self.patience if early_stopping else 0,
                           label=f"{self.name} {label}")

    def training_output(self, ctx: AttackContext) -> str:
        return "label" if self.label_only else ctx.output

    def as_targets(self, rows: Transcript, ctx: AttackContext) -> Transcript:
        """Admitted rows with the targets this attack trains on (labels if label-only)."""
        ok = np.asarray(rows.admitted, dtype=bool)
        outputs = np.asarray(rows.outputs)[ok]
        if self.training_output(ctx) == "label":
            outputs = victim_labels(outputs)
        return Transcript(rows.x[ok], outputs, rows.latency_s[ok], rows.admitted[ok])

    def fit(self, model: MultiExitNet, rows: Transcript, ctx: AttackContext, epochs: int,
            seed: int, label: str, early_stopping: bool = True) -> TrainReport | None:
        """One pass of the performance loss on the admitted rows (None when none are)."""
        targets = self.as_targets(rows, ctx)
        if len(targets.x) == 0 or epochs == 0:
            return None
        return distill(model, targets, self.training_output(ctx),
                       self.recipe(ctx, epochs, seed, label, early_stopping))

    def finish(self, rows: Transcript, ctx: AttackContext, queries: int,
               diagnostics: dict[str, Any] | None = None) -> StolenModel:
        """Train the final substitute on every admitted row, set its global strategy and
        return it with the common diagnostics (``rows`` = all queries, in order)."""
        model = self.new_substitute(ctx)
        report = self.fit(model, rows, ctx, self.epochs, ctx.seed, "final")
        targets = self.as_targets(rows, ctx)
        choice = global_strategy(model, targets.x, victim_labels(np.asarray(targets.outputs)),
                                 ctx.policy(STRATEGY_POLICY), ctx.num_classes, self.max_drop,
                                 ctx.device, None if report is None else report.holdout_rows,
                                 self.threshold)
        out = {"queries": int(queries), "admitted": len(targets.x),
               "trained_on": self.training_output(ctx),
               "substitute_architecture": substitute_architecture(self.architecture, ctx),
               "training": None if report is None else report.to_json(),
               **choice.to_json(), **(diagnostics or {})}
        return StolenModel(model=model.cpu().eval(), strategy=choice.strategy, diagnostics=out)
