"""Per-class exiting (PCE) and confidence-guided randomness (CGR) as deployed exit strategies.

Kannan, Feamster and Hoffmann, *Prediction Privacy in Distributed Multi-Exit Neural
Networks: Vulnerabilities and Solutions* (CCS 2023): one threshold per exit lets the exit
reveal the predicted class, because each class's confidences are distributed differently.
Both defenses swap the victim's exit policy for theirs (:mod:`harness.deployed`):

- ``pce`` fits a threshold per exit and per predicted class on the server's calibration
  inputs (``batch.server.calibration``: the victim's outputs on its validation split, no
  labels) so that, exit by exit, the same share of every predicted class's undecided
  inputs fires: the victim's exit shares, hence its mean cost on those inputs, are kept.
- ``cgr`` serves PCE's exit with probability ``mix`` and otherwise an exit drawn from the
  victim's exit shares, with ``mix`` the largest for which the exit decision is
  ``epsilon``-locally differentially private (:func:`harness.deployed.cgr_mix`).

Each declares its strategy (:meth:`deployed_strategy`), so the cell scores the attack
against what the server really deploys, not the victim's original strategy, while benign
costs are measured against the original. Both decide exit by exit (``choose_exits``,
``needs_policy_exits = False``): a query is computed, and charged, only as deep as the
exit that answers it (CGR's drawn exits without computing PCE's decision at all).
``report()`` gives the calibration: samples, mean cost fraction of the original and the
deployed strategy, their class imbalance (:func:`harness.deployed.class_exit_imbalance`),
and the queries served (CGR: how many followed PCE).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from harness.deployed import (
    Calibration,
    ConfidenceGuidedStrategy,
    calibrate_per_class,
    cgr_mix,
    staged_exits,
)
from harness.params import Interval
from harness.stages import Defense, ServerInfo, StageBatch
from harness.strategy import OutputStrategy


class PerClassExiting(Defense):
    """PCE: per-exit, per-predicted-class thresholds balancing exit rates across classes.

    Promises: the victim's exit shares and mean compute cost on the calibration inputs
    (up to rounding to whole inputs per class); the same share of every predicted class
    (with at least ``min_samples`` undecided calibration inputs at that exit; rarer
    classes share the pooled threshold) exits at each exit; the client gets the real
    probabilities of the exit that answered. Does not promise: any privacy guarantee (a
    deterministic rule, the paper proves none), cost or balance on inputs unlike the
    calibration ones.
    """

    name = "pce"
    needs_policy_exits = False
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "min_samples": [Interval("int", 1, 10_000)],
    }

    def __init__(self, min_samples: int = 5) -> None:
        self.min_samples = min_samples

    def reset(self) -> None:
        self._served = 0

    def calibration(self, server: ServerInfo) -> Calibration:
        """PCE fitted on ``server``'s calibration outputs (cached per server strategy)."""
        key = getattr(self, "_key", None)
        if key is None or key[0] != server.strategy or key[1] is not server.calibration:
            calibration = calibrate_per_class(server.strategy, server.calibration,
                                              min_samples=int(self.min_samples),
                                              cost_fraction=server.cost_fraction)
            self._key, self._calibration = (server.strategy, server.calibration), calibration
        return self._calibration

    def deployed_strategy(self, server: ServerInfo) -> OutputStrategy | None:
        return self.calibration(server).strategy

    def choose_exits(self, batch: StageBatch) -> np.ndarray:
        strategy = self.deployed_strategy(batch.server)
        self._served = getattr(self, "_served", 0) + len(batch)
        return staged_exits(strategy.fires_at, batch.server.num_exits, batch.exit_probs,
                            len(batch))

    def report(self) -> dict[str, float]:
        calibration = getattr(self, "_calibration", None)
        counters = {} if calibration is None else dict(calibration.counters)
        return {**counters, "queries": float(getattr(self, "_served", 0))}


class ConfidenceGuidedRandomness(PerClassExiting):
    """CGR: PCE's exit with probability ``mix``, else an exit drawn from the victim's shares.

    Promises: ``epsilon``-local differential privacy of the exit decision with respect to
    the input (for any two inputs, every exit's probability differs by at most a factor
    ``e^epsilon``; ``mix`` is the largest that allows, given the smallest positive exit
    share); the victim's exit shares and mean cost on the calibration inputs in
    expectation; fresh draws from ``batch.rng`` per query. Does not promise: hiding the
    class from the outputs themselves (only the exit is randomized), accuracy (a query
    drawn to an early exit is answered by it), nor privacy against repeated queries beyond
    the usual composition (``r`` repeats of one input: ``r * epsilon``).
    """

    name = "cgr"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "epsilon": [Interval("real", 0, 50)],
        "min_samples": [Interval("int", 1, 10_000)],
    }

    def __init__(self, epsilon: float = 1.0, min_samples: int = 5) -> None:
        self.epsilon = epsilon
        self.min_samples = min_samples

    def reset(self) -> None:
        super().reset()
        self._followed = 0

    def deployed_strategy(self, server: ServerInfo) -> OutputStrategy | None:
        pce = self.calibration(server)
        if getattr(self, "_cgr_for", None) is not pce:
            base = pce.targets
            self._cgr = ConfidenceGuidedStrategy(
                pce.strategy.policy, pce.strategy.thresholds, pce.strategy.class_thresholds,
                mix=cgr_mix(float(self.epsilon), base), base=base)
            self._cgr_for = pce
        return self._cgr

    def choose_exits(self, batch: StageBatch) -> np.ndarray:
        strategy = self.deployed_strategy(batch.server)
        assert isinstance(strategy, ConfidenceGuidedStrategy)
        n = len(batch)
        follow, exits = strategy.coins(n, batch.rng)
        rows = np.flatnonzero(follow)
        if len(rows):  # only these compute PCE's decision, stage by stage
            pce = staged_exits(strategy.fires_at, batch.server.num_exits,
                               lambda k, sub: batch.exit_probs(k, rows[sub]), len(rows))
            exits[rows] = strategy.into_support(pce)
        self._served = getattr(self, "_served", 0) + n
        self._followed = getattr(self, "_followed", 0) + len(rows)
        return exits

    def report(self) -> dict[str, float]:
        counters = super().report()
        strategy = getattr(self, "_cgr", None)
        if strategy is not None:
            counters.update(mix=strategy.mix, epsilon=float(self.epsilon),
                            min_base_share=float(min(p for p in strategy.base if p > 0)))
        return {**counters, "followed_pce": float(getattr(self, "_followed", 0))}
