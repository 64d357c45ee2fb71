"""Digits victims that stress exit estimation: lopsided exit mixes and weak early exits.

* ``digits_cnn_random`` - the ``digits_cnn`` network and training (same cached weights for
  equal parameters) with thresholds drawn at random: ``draw`` seeds a Dirichlet draw of
  target exit shares (:func:`draw_target_shares`), and each exit's threshold is the
  validation-split quantile of the still-undecided samples that gives it its share
  (:func:`thresholds_for_shares`). Over draws the mixes range from balanced to ~90% at
  one exit with 1-2% (or, on unseen inputs, none) at others - the rare exits an
  estimator must still find. The drawn shares are recorded in each cell's
  ``victim_details``.
* ``digits_cnn_weak_early`` - ``digits_cnn`` with global-average-pooled exit heads
  (``head_pool=1``): an exit sees only channel means, which the shallow first stage's
  local features do not survive, so exit 0 is clearly weaker (test accuracy 0.84 with
  the default recipe) than the final exit (0.997). Its thresholds come from the normal
  selection (:mod:`victims.thresholds`), so exit 0 answers only its most confident inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from harness.model import MultiExitNet
from harness.nn.thresholds import distinct_cuts, threshold_for_prefix
from harness.nn.training import predict_exit_probs
from harness.params import Interval
from harness.protocol import DatasetSplits, Victim, VictimContext
from harness.strategy import ExitPolicy, OutputStrategy
from victims.zoo import MAX_SEED, TRAINING_CONSTRAINTS, SmallCNNVictim, TrainedCNNVictim

MIN_SHARE = 0.005
"""Floor of every drawn target share (before renormalising), so no exit is empty by design."""


def draw_target_shares(draw: int, num_exits: int, concentration: float = 0.4) -> tuple[float, ...]:
    """Target exit shares for ``draw``: Dirichlet(``concentration``), floored at 0.5%, renormalised.

    A concentration below 1 makes most draws lopsided (one or two exits take most
    traffic); the same ``draw`` always gives the same shares.
    """
    rng = np.random.default_rng(int(draw))
    shares = np.maximum(rng.dirichlet(np.full(int(num_exits), float(concentration))), MIN_SHARE)
    return tuple(float(s) for s in shares / shares.sum())


def _nearest_cut(sorted_confidence: np.ndarray, want: int) -> int:
    """The prefix size closest to ``want`` that splits no tied scores (ties: the smaller)."""
    ok = np.concatenate([[True], distinct_cuts(sorted_confidence)])
    sizes = np.flatnonzero(ok)
    return int(sizes[np.argmin(np.abs(sizes - want))])


def thresholds_for_shares(per_exit_probs: Sequence[np.ndarray], policy: ExitPolicy,
                          shares: Sequence[float]) -> tuple[float, ...]:
    """One threshold per non-final exit so that ``per_exit_probs`` exit in about ``shares``.

    Exit by exit, among the samples no earlier exit took, the most confident ones fire
    until the cumulative share so far is met (rounded to whole samples; cumulative, so
    rounding and ties do not accumulate). Thresholds lie midway between the last
    sample in and the first out (:func:`threshold_for_prefix`), inside the policy's range.
    """
    probs = [np.asarray(p) for p in per_exit_probs]
    if len(shares) != len(probs):
        raise ValueError(f"{len(shares)} shares for {len(probs)} exits")
    n = len(probs[0])
    lo, hi = policy.threshold_range(probs[0].shape[1])
    cumulative = np.round(np.cumsum(shares) * n).astype(np.int64)
    undecided = np.ones(n, dtype=bool)
    decided = 0
    thresholds = []
    for k in range(len(probs) - 1):
        reach = np.flatnonzero(undecided)
        scores = policy.score(probs[k][reach])
        order = np.argsort(-policy.confidence(scores), kind="stable")
        sorted_scores = scores[order]
        want = int(np.clip(cumulative[k] - decided, 0, len(reach)))
        m = _nearest_cut(policy.confidence(sorted_scores), want)
        tau = threshold_for_prefix(policy, sorted_scores, m, lo, hi)
        fired = policy.fires(scores, tau)
        undecided[reach[fired]] = False
        decided += int(fired.sum())
        thresholds.append(tau)
    return tuple(thresholds)


class DigitsCNNRandom(TrainedCNNVictim):
    """``digits_cnn`` with thresholds for randomly drawn target exit shares (``draw``)."""

    name = "digits_cnn_random"
    dataset = "digits"
    default_policy = "max_prob"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **TRAINING_CONSTRAINTS,
        "draw": [Interval("int", 0, MAX_SEED)],
        "concentration": [Interval("real", 0, 100, closed="right")],
    }

    def __init__(self, num_exits: int = 4, width: int = 32, epochs: int = 20, lr: float = 3e-3,
                 batch_size: int = 64, train_seed: int = 0, train_threads: int = 1,
                 policy: str | None = None, draw: int = 0, concentration: float = 0.4) -> None:
        self.num_exits = num_exits
        self.width = width
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.train_seed = train_seed
        self.train_threads = train_threads
        self.policy = policy
        self.draw = draw
        self.concentration = concentration

    def target_shares(self) -> tuple[float, ...]:
        """The exit shares this ``draw`` aims for (deterministic)."""
        return draw_target_shares(self.draw, self.num_exits, self.concentration)

    def details(self) -> dict[str, Any]:
        return {"draw": self.draw, "target_shares": list(self.target_shares())}

    def select_strategy(self, model: MultiExitNet, data: DatasetSplits, policy: ExitPolicy,
                        device: str) -> OutputStrategy:
        """Thresholds giving the validation split the drawn shares."""
        val_probs = predict_exit_probs(model, data.val.x, device)
        return OutputStrategy(policy, thresholds_for_shares(val_probs, policy,
                                                            self.target_shares()))


class DigitsCNNWeakEarly(SmallCNNVictim):
    """``digits_cnn`` with global-pooled exit heads (``head_pool=1``): a weak exit 0."""

    name = "digits_cnn_weak_early"
    dataset = "digits"
    default_policy = "max_prob"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **SmallCNNVictim._parameter_constraints,
        "head_pool": [Interval("int", 1, 64)],
    }

    def __init__(self, num_exits: int = 4, width: int = 32, epochs: int = 20, lr: float = 3e-3,
                 batch_size: int = 64, train_seed: int = 0, train_threads: int = 1,
                 thresholds: list[float] | None = None, policy: str | None = None,
                 max_accuracy_drop: float = 0.01, max_exit_share: float = 0.4,
                 head_pool: int = 1) -> None:
        super().__init__(num_exits=num_exits, width=width, epochs=epochs, lr=lr,
                         batch_size=batch_size, train_seed=train_seed,
                         train_threads=train_threads, thresholds=thresholds, policy=policy,
                         max_accuracy_drop=max_accuracy_drop, max_exit_share=max_exit_share)
        self.head_pool = head_pool

    def architecture_config(self) -> dict[str, Any]:
        return {"width": self.width, "head_pool": self.head_pool}

    def build(self, data: DatasetSplits, ctx: VictimContext) -> MultiExitNet:
        return ctx.new_network(self.family, data.input_shape, data.num_classes, self.num_exits,
                               self.train_seed, width=self.width, head_pool=self.head_pool)


STRESS_VICTIMS: tuple[type[Victim], ...] = (DigitsCNNRandom, DigitsCNNWeakEarly)
