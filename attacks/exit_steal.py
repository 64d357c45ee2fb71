"""The output-strategy stealing attack of Li Pan et al. (arXiv 2305.13584) and variants.

Three stages (docs/design.md section 1):

1. **Estimation.** Query ``budget // repeats`` pool inputs, each ``repeats`` times in a
   row (every repeat is charged). Per input, combine the admitted repeats' latencies
   by ``min`` (robust to scheduler hiccups, which only ever add time) or ``median``, and
   their outputs by averaging probabilities (the first admitted label for
   ``output=label``). Inputs with no admitted repeat are dropped. An exit estimator
   (``bayes`` by default; ``ruptures``, ``kde``, ``bocpd``, ...) turns the combined
   latencies into an estimated exit ``e_i`` per input; ``num_exits`` is the threat
   model's ``ctx.num_exits`` or, when not granted, inferred by the estimator.
2. **Training.** A multi-exit substitute (the victim's family by default) is first
   trained for ``epochs`` with the performance loss ``L_perf``. With ``output=probs``
   and ``performance="exit_logits"`` (default) that is exit-aware logit matching
   (:mod:`attacks.exit_distill`): the substitute's exit ``e_i`` regresses onto the
   victim's log-probabilities, which are exit ``e_i``'s logits up to a constant; with
   ``performance="soft_ce"`` it is the SDN-weighted soft cross-entropy of every exit
   toward the returned vector, and with ``output=label`` cross-entropy on the labels
   (:mod:`attacks.substitute`). An output strategy search (stage 3) on it gives
   provisional thresholds ``tau``; then it is fine-tuned for ``finetune_epochs`` on
   ``L_perf + strategy_weight * L_strategy(tau)`` (:mod:`attacks.strategy_loss`: per
   exit ``k <= e`` a BCE "exit here or not" target on the threshold-shifted confidence).
   Fitting ``tau`` to the substitute first means the strategy loss only has to move
   the samples on the wrong side of a threshold the substitute can already realise.
   On digits_cnn (3 seeds, budget 540) exit-logit matching raised exit agreement from
   0.68 (soft cross-entropy) to 0.73; the strategy term mainly closes the efficiency gap.
3. **Output strategy search** (:mod:`attacks.strategy_search`) on the fine-tuned
   substitute: greedy per-exit thresholds, then coordinate ascent on the agreement of
   the substitute's exits with ``e`` on all admitted queries, ties broken by label
   agreement with the victim, then by the conservative (larger) threshold.

**Adaptive settings** (all off by default; then the attack is bit-identical to the one
above). The named variants of :mod:`attacks.adaptive` set them against one defense each.

* ``repeat_perturb`` (in ``[0, 1]``, a fraction of the width of ``ctx.input_range``;
  acts with ``repeats > 1``): every repeat after an input's first is the input plus
  uniform noise in ``[-s, s]`` times the range width, clipped to the range
  (:mod:`attacks.repeats`). A defense that keys its delay on the (quantised) input
  gives exact repeats the same delay, so ``min`` over them removes nothing; a
  perturbation beyond its grid step draws a fresh delay each time. The combined latency
  still gives one estimated exit per input, but every admitted copy is then a training
  and search row of its own (its own input and output, its input's estimated exit):
  the copies were paid for, and the inputs alone would be ``1 / repeats`` of the data.
  A copy near a threshold may have taken another exit than its input's estimate.
* ``exit_label_noise`` (in ``[0, 0.5)``): the assumed rate ``eps`` at which an estimated
  exit is not the exit the victim's strategy chose (a defense that answers from another
  exit, uniformly, with probability ``eps``). Latency and output both follow the exit
  that really answered, so the exit-logit term stays exact; what goes wrong is the
  strategy loss, which pushes the substitute to fire where the victim's strategy did
  not. After the first search each query's strategy-loss term is weighted by the
  posterior probability that its estimated exit is clean, given whether the provisional
  substitute exit agrees with it (:func:`attacks.noisy_labels.clean_label_weights`).
  The threshold search stays unweighted: under noise that is uniform over the other
  exits its agreement objective is an increasing affine function of the agreement with
  the clean exits, so its maximiser is unchanged, while weights taken from the
  substitute's own exits would only confirm its current thresholds.
* ``performance="labels"``: cross-entropy on the returned top-1 labels (output
  perturbations such as rounding, reverse sigmoid or noise keep the top-1 but distort
  the probabilities that exit-logit matching regresses onto), and the strategy loss'
  victim confidence is left unknown.

Thresholds are fitted on every admitted query: they are the attacker's only data with
(estimated) exits, and with at most a few hundred queries a held-out split costs more
agreement than it saves; epochs and weights are fixed parameters, not tuned per cell.
For the same reason both training passes run through the shared trainer
(:mod:`attacks.trainer`) with ``holdout=0`` by default: every admitted query is trained
on for all epochs. ``holdout`` / ``patience`` turn on its early stopping (a seeded
fraction of the rows is held out of *training* only; the search still uses every row).

``estimated_exits`` holds one entry per oracle query in query order (each repeat gets
its input's estimate; refused inputs get 0). Variants differ only in the default
estimator; ``exit_steal_reference`` is a *reference* upper bound that reads the true
exits instead of estimating them.

Components come from the registry through ``ctx``: the estimator (any registered one,
``estimator_params`` checked against its constraints), the policy (any registered
policy; one without a training space, see :class:`harness.strategy.ExitPolicy`, skips
the strategy loss, says so in ``diagnostics.strategy_loss_skipped``, and still has its
thresholds searched) and the
substitute (``architecture``, by default the victim's family, with
``architecture_params``). When the threat model hides the family
(``threat.architecture=hidden``) and ``architecture`` is not set, the substitute is a
``small_cnn`` (:data:`attacks.substitute.DEFAULT_ARCHITECTURE`, the attacker's generic
choice); when it hides the number of exits, the estimator infers it.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from attacks.baseline import DEFAULT_NUM_EXITS
from attacks.estimator_variants import compare_variants
from attacks.exit_distill import train_exit_distillation
from attacks.global_threshold import global_strategy
from attacks.noisy_labels import clean_label_weights
from attacks.reliability import FALLBACK_MAX_DROP, describe, unreliable_reasons
from attacks.repeats import COMBINE, admitted_copies, combine_repeats, perturbed_repeats
from attacks.strategy_loss import strategy_loss
from attacks.strategy_search import search_strategy
from attacks.substitute import (
    Transcript,
    distill,
    draw_pool_indices,
    query_inputs,
    substitute_architecture,
    victim_labels,
)
from attacks.trainer import TrainRecipe
from harness.components import check_nested
from harness.errors import ConfigError, HarnessError
from harness.model import MultiExitNet, exit_probabilities
from harness.params import ComponentName, Interval, Options
from harness.protocol import (
    Attack,
    AttackContext,
    ExitEstimate,
    ExitEstimator,
    OracleHandle,
    StolenModel,
)
from harness.strategy import ExitPolicy, OutputStrategy

if TYPE_CHECKING:
    from harness.plugins.registry import Registry

PERFORMANCE = ("exit_logits", "soft_ce", "labels")
VARIANTS_STREAM = 5
"""The seed stream of the estimator-variants check (0: pool, 1: estimator, 2: perturbation)."""


def accepts_keyword(method: Any, name: str) -> bool:
    """Whether ``method`` takes keyword ``name`` (older plugin estimators may not)."""
    params = inspect.signature(method).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def run_estimator(estimator: ExitEstimator, rows: Transcript, ctx: AttackContext,
                  rng: np.random.Generator, **extra: Any) -> ExitEstimate:
    """``estimator`` on the combined latencies, with the cost fractions when granted."""
    if ctx.cost_fraction is not None and accepts_keyword(estimator.estimate, "cost_fraction"):
        extra["cost_fraction"] = ctx.cost_fraction  # granted: maps clusters to exits
    return estimator.estimate(rows.latency_s, ctx.num_exits, rng, **extra)


class ExitStealAttack(Attack):
    """Steals the function and the output strategy via the latency side channel."""

    name = "exit_steal"
    default_estimator: ClassVar[str] = "bayes"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "estimator": [ComponentName("exit_estimator"), None],
        "estimator_params": [dict, None],
        "repeats": [Interval("int", 1, 1000)],
        "combine": [Options(*COMBINE)],
        "epochs": [Interval("int", 0, 100_000)],
        "finetune_epochs": [Interval("int", 0, 100_000)],
        "lr": [Interval("real", 0, 1, closed="right")],
        "finetune_lr": [Interval("real", 0, 1, closed="right")],
        "batch_size": [Interval("int", 1, 1_000_000)],
        "architecture": [ComponentName("architecture"), None],
        "architecture_params": [dict, None],
        "strategy_weight": [Interval("real", 0, None)],
        "temperature": [Interval("real", 0, None, closed="neither")],
        "confidence_weight": [Interval("real", 0, None)],
        "policy": [ComponentName("exit_policy")],
        "max_sweeps": [Interval("int", 1, 10_000)],
        "performance": [Options(*PERFORMANCE)],
        "other_exit_weight": [Interval("real", 0, None)],
        "repeat_perturb": [Interval("real", 0, 1)],
        "exit_label_noise": [Interval("real", 0, 0.5, closed="left")],
        "holdout": [Interval("real", 0, 1, closed="left")],
        "patience": [Interval("int", 0, 100_000)],
    }

    def __init__(self, estimator: str | None = None, estimator_params: dict | None = None,
                 repeats: int = 1, combine: str = "min", epochs: int = 30,
                 finetune_epochs: int = 10, lr: float = 3e-3, finetune_lr: float = 1e-3,
                 batch_size: int = 64, architecture: str | None = None,
                 architecture_params: dict | None = None,
                 strategy_weight: float = 3.0, temperature: float = 1.0,
                 confidence_weight: float = 0.0,
                 policy: str = "max_prob", max_sweeps: int = 10,
                 performance: str = "exit_logits", other_exit_weight: float = 0.0,
                 repeat_perturb: float = 0.0, exit_label_noise: float = 0.0,
                 holdout: float = 0.0, patience: int = 0) -> None:
        self.estimator = estimator
        self.estimator_params = estimator_params
        self.repeats = repeats
        self.combine = combine
        self.epochs = epochs
        self.finetune_epochs = finetune_epochs
        self.lr = lr
        self.finetune_lr = finetune_lr
        self.batch_size = batch_size
        self.architecture = architecture
        self.architecture_params = architecture_params
        self.strategy_weight = strategy_weight
        self.temperature = temperature
        self.confidence_weight = confidence_weight
        self.policy = policy
        self.max_sweeps = max_sweeps
        self.performance = performance
        self.other_exit_weight = other_exit_weight
        self.repeat_perturb = repeat_perturb
        self.exit_label_noise = exit_label_noise
        self.holdout = holdout
        self.patience = patience

    # -- parameters -------------------------------------------------------------------
    def _fail(self, message: str) -> ConfigError:
        return ConfigError(f"attack {self.name!r}: {message}")

    def estimator_name(self) -> str:
        return self.estimator or self.default_estimator

    def validate(self, registry: Registry | None = None) -> None:
        """Constraints, then the estimator, its parameters and the policy via ``registry``."""
        super().validate(registry)
        if registry is None:
            return
        est = self.estimator_name()
        entry = registry.get("exit_estimator", est)
        if entry.cls.reference and not self.reference:
            raise self._fail(f"estimator {est!r} needs the true exits; only the reference "
                             "attack 'exit_steal_reference' may use it")
        owner = f"attack {self.name!r}"
        check_nested(owner, registry, "exit_estimator", est, self.estimator_params,
                     "estimator_params")
        if self.architecture is not None:
            check_nested(owner, registry, "architecture", self.architecture,
                         self.architecture_params, "architecture_params")
        registry.policy(self.policy)  # a known name (a policy that is not trainable only
        # skips the strategy loss, recorded in the diagnostics; the threshold search runs)

    def _network(self, ctx: AttackContext, num_exits: int) -> MultiExitNet:
        return ctx.new_network(num_exits, ctx.seed, substitute_architecture(self.architecture, ctx),
                               **(self.architecture_params or {}))

    # -- stage 1 ----------------------------------------------------------------------
    def _query(self, oracle: OracleHandle, pool: np.ndarray, ctx: AttackContext
               ) -> tuple[Transcript, np.ndarray, np.ndarray, tuple | None]:
        """(combined admitted rows, kept mask per input, input index of every query,
        perturbed copies with their kept-input index, or None without perturbation)."""
        n_inputs = min(ctx.budget, oracle.budget_left) // self.repeats
        if n_inputs < 1:
            raise self._fail(f"budget {oracle.budget_left} is too small for repeats="
                             f"{self.repeats}; lower repeats or raise budget")
        inputs = pool[draw_pool_indices(n_inputs, len(pool), ctx.rng(0))]
        perturb = self.repeat_perturb > 0 and self.repeats > 1
        queries = (perturbed_repeats(inputs, self.repeats, self.repeat_perturb, ctx.input_range,
                                     ctx.rng(2)) if perturb
                   else np.repeat(inputs, self.repeats, axis=0))
        raw = query_inputs(oracle, queries)
        rows, kept = combine_repeats(raw, inputs, self.repeats, self.combine)
        copies = admitted_copies(raw, kept, self.repeats) if perturb else None
        return rows, kept, np.repeat(np.arange(n_inputs), self.repeats), copies

    def _estimate(self, est_name: str, rows: Transcript, kept: np.ndarray, oracle: OracleHandle,
                  ctx: AttackContext) -> tuple[ExitEstimate, dict[str, Any]]:
        """The exit estimate and what to add to the diagnostics about how it was made."""
        return self._estimate_unsupervised(est_name, rows, kept, oracle, ctx), {}

    def _estimate_unsupervised(self, est_name: str, rows: Transcript, kept: np.ndarray,
                               oracle: OracleHandle, ctx: AttackContext) -> ExitEstimate:
        estimator = ctx.estimator(est_name, **(self.estimator_params or {}))
        extra = {}
        if estimator.reference:
            served = oracle.true_exits_for_reference()[-len(kept) * self.repeats:]
            extra["true_exits"] = served.reshape(len(kept), self.repeats).max(axis=1)[kept]
        return run_estimator(estimator, rows, ctx, ctx.rng(1), **extra)

    def _compare_variants(self, made_by: str, rows: Transcript, est: np.ndarray,
                          ctx: AttackContext) -> dict[str, Any]:
        """How far the unsupervised estimators other than ``made_by`` (what made ``est``)
        agree with ``est`` (diagnostics only)."""
        if self.reference:
            return {}
        rng = ctx.rng(VARIANTS_STREAM)
        return compare_variants(lambda e: run_estimator(e, rows, ctx, rng).exits,
                                ctx.estimator, est, made_by)

    def _made_by(self, est_name: str, notes: dict[str, Any]) -> str:
        """What made the estimate (the estimator's name; a subclass may estimate otherwise)."""
        return est_name

    def _own_reasons(self, notes: dict[str, Any]) -> list[str]:
        """Why this variant's own way of estimating should not be trusted (none here)."""
        return []

    def _ties_matter(self, notes: dict[str, Any]) -> bool:
        """Whether fewer distinct latencies than exits makes the estimate unreliable (an
        estimate that knows what each latency value means, as templates do, is not)."""
        return True

    # -- stages 2 and 3 ---------------------------------------------------------------
    def _search(self, model: MultiExitNet, rows: Transcript, est: np.ndarray,
                labels: np.ndarray, ctx: AttackContext, policy: ExitPolicy):
        probs = exit_probabilities(model, rows.x, ctx.device)
        return search_strategy(probs, est, labels, policy, self.max_sweeps)

    def _clean_weights(self, model: MultiExitNet, rows: Transcript, est: np.ndarray,
                       first: Any, ctx: AttackContext) -> np.ndarray | None:
        """Per-query weights of the strategy loss under ``exit_label_noise`` (else None)."""
        if self.exit_label_noise <= 0:
            return None
        provisional = first.strategy.exits(exit_probabilities(model, rows.x, ctx.device))
        return clean_label_weights(provisional, est, self.exit_label_noise, model.num_exits)

    def _fit(self, model: MultiExitNet, rows: Transcript, est: np.ndarray, ctx: AttackContext,
             *, epochs: int, lr: float, seed: int, extra=None, extra_targets=(),
             other_weight: float | None = None) -> None:
        """One training pass with the performance loss (+ ``extra(exit_logits, est, *t)``)."""
        if self.performance == "labels" and ctx.output == "probs":
            rows = Transcript(rows.x, victim_labels(rows.outputs), rows.latency_s, rows.admitted)
            output = "label"
        else:
            output = ctx.output
        recipe = TrainRecipe(epochs=epochs, lr=lr, batch_size=self.batch_size, seed=seed,
                             device=ctx.device, holdout=self.holdout, patience=self.patience,
                             label=f"{self.name} ({'fine-tune' if extra else 'performance'})")
        if output == "probs" and self.performance == "exit_logits":
            train_exit_distillation(model, rows, est, recipe,
                                    other_weight=(self.other_exit_weight if other_weight is None
                                                  else other_weight), extra_loss=extra,
                                    extra_targets=tuple(extra_targets))
            return
        targets = [torch.as_tensor(est), *extra_targets]
        distill(model, rows, output, recipe, extra_targets=targets if extra else (),
                extra_loss=extra)

    def _train(self, rows: Transcript, est: np.ndarray, num_exits: int, ctx: AttackContext,
               policy: ExitPolicy) -> tuple[MultiExitNet, Any, Any, dict[str, Any]]:
        """(substitute, first search, final search, diagnostics of the adaptive settings)."""
        model = self._network(ctx, num_exits)
        notes: dict[str, Any] = {}
        labels = victim_labels(rows.outputs)
        self._fit(model, rows, est, ctx, epochs=self.epochs, lr=self.lr, seed=ctx.seed)
        first = self._search(model, rows, est, labels, ctx, policy)
        wanted = self.finetune_epochs > 0 and self.strategy_weight > 0 and num_exits > 1
        if wanted and not policy.trainable():
            notes["strategy_loss_skipped"] = (
                f"exit policy {policy.name!r} has no training-space confidence "
                "(confidence_logit, confidence_logit_np, threshold_logit); the substitute "
                "kept its first training and the thresholds were searched on it")
        elif wanted:
            s_loss = strategy_loss(policy, first.strategy.thresholds, self.temperature,
                                   self.confidence_weight)
            weight = float(self.strategy_weight)
            if ctx.output == "probs" and self.performance != "labels":
                conf = policy.confidence_logit_np(rows.outputs)
            else:
                conf = np.full(len(rows.x), np.nan)
            targets = [torch.as_tensor(conf, dtype=torch.float32)]
            clean = self._clean_weights(model, rows, est, first, ctx)
            if clean is not None:
                targets.append(torch.as_tensor(clean, dtype=torch.float32))
                notes["clean_weight_mean"] = float(clean.mean())

            def extra(exit_logits, estimated, victim_conf, *sample_weight):
                return weight * s_loss(exit_logits, estimated, victim_conf, *sample_weight)

            self._fit(model, rows, est, ctx, epochs=self.finetune_epochs, lr=self.finetune_lr,
                      seed=ctx.seed + 1, extra=extra, extra_targets=targets)
        final = self._search(model, rows, est, labels, ctx, policy)
        return model, first, final, notes

    def steal(self, oracle: OracleHandle, attacker_data, ctx: AttackContext) -> StolenModel:
        est_name = self.estimator_name()
        rows, kept, query_input, copies = self._query(oracle, np.asarray(attacker_data), ctx)
        per_input = np.zeros(len(kept), dtype=np.int64)
        policy = ctx.policy(self.policy)
        if len(rows.x) < 2:  # everything refused: nothing to learn from
            k = ctx.num_exits or 2
            model = self._network(ctx, k).eval()
            lo, hi = policy.threshold_range(ctx.num_classes)
            strict = hi if policy.higher_is_confident else lo
            return StolenModel(model, OutputStrategy(policy, (strict,) * (k - 1)),
                               per_input[query_input], {"admitted_inputs": len(rows.x)})
        notes: dict[str, Any] = {}
        try:
            estimate, notes = self._estimate(est_name, rows, kept, oracle, ctx)
            failure = None
        except HarnessError:
            raise  # bad parameters or a refused query: not a failed fit
        except Exception as exc:  # the estimator's fit failed: fall back, saying so
            estimate, failure = None, f"{type(exc).__name__}: {exc}"[:300]
        est = None if estimate is None else np.asarray(estimate.exits, dtype=np.int64)
        reasons = [*unreliable_reasons(rows.latency_s, est, ctx.num_exits, failure,
                                       ties_matter=self._ties_matter(notes)),
                   *self._own_reasons(notes)]
        if reasons:
            return self._fallback(rows, est, per_input, kept, query_input, ctx, policy,
                                  reasons, est_name, notes)
        notes.update(self._compare_variants(self._made_by(est_name, notes), rows, est, ctx))
        num_exits = ctx.num_exits or estimate.num_exits
        train_rows, train_est = (rows, est) if copies is None else (copies[0], est[copies[1]])
        model, first, final, train_notes = self._train(train_rows, train_est, max(num_exits, 1),
                                                       ctx, policy)
        per_input[kept] = est
        diagnostics = {
            "estimator": est_name,
            "cost_fraction_given": ctx.cost_fraction is not None,
            "substitute_architecture": substitute_architecture(self.architecture, ctx),
            "estimated_boundaries_s": np.asarray(estimate.boundaries).tolist(),
            "estimated_num_exits": int(estimate.num_exits),
            "estimated_exit_histogram": np.bincount(est, minlength=num_exits).tolist(),
            "queries": len(query_input),
            "admitted_inputs": len(rows.x),
            "training_rows": len(train_rows.x),
            "repeats": self.repeats,
            "search_agreement_before_finetune": first.agreement,
            "search_agreement": final.agreement,
            "search_greedy_agreement": final.greedy_agreement,
            "search_sweeps": final.sweeps,
            **notes,
            **train_notes,
        }
        return StolenModel(model=model.cpu().eval(), strategy=final.strategy,
                           estimated_exits=per_input[query_input], diagnostics=diagnostics)


    def _fallback(self, rows: Transcript, est: np.ndarray | None, per_input: np.ndarray,
                  kept: np.ndarray, query_input: np.ndarray, ctx: AttackContext,
                  policy: ExitPolicy, reasons: list[str], est_name: str,
                  notes: dict[str, Any]) -> StolenModel:
        """Never worse than not trying (:mod:`attacks.reliability`): every exit distilled on
        every admitted row, one global threshold chosen on them."""
        num_exits = ctx.num_exits or DEFAULT_NUM_EXITS  # the baselines' choice when hidden
        model = self._network(ctx, num_exits)
        targets = np.full(len(rows.x), num_exits - 1, dtype=np.int64) if est is None else est
        self._fit(model, rows, np.minimum(targets, num_exits - 1), ctx, epochs=self.epochs,
                  lr=self.lr, seed=ctx.seed, other_weight=1.0)
        choice = global_strategy(model, rows.x, victim_labels(rows.outputs), policy,
                                 ctx.num_classes, FALLBACK_MAX_DROP, ctx.device)
        guessed = choice.strategy.exits(exit_probabilities(model, rows.x, ctx.device))
        per_input[kept] = guessed if est is None else est
        diagnostics = {"estimator": est_name, "queries": len(query_input),
                       "admitted_inputs": len(rows.x), "training_rows": len(rows.x),
                       "substitute_architecture": substitute_architecture(self.architecture, ctx),
                       **notes, **describe(reasons), **choice.to_json()}
        return StolenModel(model=model.cpu().eval(), strategy=choice.strategy,
                           estimated_exits=per_input[query_input], diagnostics=diagnostics)
