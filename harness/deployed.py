"""Deployed strategies that replace a victim's: per-class exiting and confidence-guided randomness.

The exit policies of Kannan, Feamster and Hoffmann, *Prediction Privacy in Distributed
Multi-Exit Neural Networks: Vulnerabilities and Solutions* (CCS 2023), as output strategies
(docs/design.md section 6, "Deployed strategies"):

- :class:`PerClassStrategy` (**PCE**, per-class exiting): a threshold per non-final exit
  *and per class predicted at that exit*. :func:`calibrate_per_class` chooses the table
  so that, exit after exit, the same share of the still-undecided inputs of every
  predicted class fires (the victim's exit shares as the target): the exit an input takes
  says less about its predicted class, and the exit histogram, hence the mean compute
  cost, stays the victim's on the calibration inputs. No privacy guarantee (the paper
  proves there is none).
- :class:`ConfidenceGuidedStrategy` (**CGR**, confidence-guided randomness): each query
  follows PCE's decision with probability ``mix`` (rho) and otherwise exits at an exit drawn
  from the base distribution ``base`` (pi: PCE's target shares, i.e. the victim's), so the
  exit distribution of the calibration inputs and the mean cost stay the same in
  expectation. Guarantee: the exit is a randomized response on PCE's decision, so for any
  two inputs x, x' and every exit j, ``P[exit = j | x] <= e^epsilon P[exit = j | x']``
  (epsilon-local differential privacy of the exit decision with respect to the whole input,
  hence of anything the exit could reveal about its predicted class) with
  ``epsilon = ln(1 + rho / ((1 - rho) * min_j pi_j))`` over the exits with ``pi_j > 0``
  (:func:`cgr_mix` inverts it). PCE decisions on an exit with ``pi_j = 0`` (only the final
  exit can be one) are moved to the nearest exit in the support. The guarantee covers the
  exit (the timing) only, not the probabilities a query is answered with.

Both keep the victim's policy and scalar thresholds (``policy``, ``thresholds``), so code
that reads an :class:`~harness.strategy.OutputStrategy` keeps working, and override
:meth:`exits` and :meth:`fires_at`; :func:`strategy_from_json` rebuilds any of them from
:meth:`to_json` (``kind``), only ever with harness code and registered policies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from harness.errors import ConfigError
from harness.strategy import ExitPolicy, OutputStrategy

Table = tuple[tuple[float | None, ...], ...]


@dataclass(frozen=True)
class PerClassStrategy(OutputStrategy):
    """PCE: exit ``k`` fires when the policy's score of its probabilities passes
    ``class_thresholds[k][c]``, ``c`` the class exit ``k`` predicts (None: never fires).

    ``thresholds`` are kept (the strategy it was calibrated from) for code that reads them;
    the decisions use the table only.
    """

    class_thresholds: Table = ()
    kind: ClassVar[str] = "per_class"

    def __post_init__(self) -> None:
        super().__post_init__()
        table = tuple(tuple(None if t is None else float(t) for t in row)
                      for row in self.class_thresholds)
        if len(table) != len(self.thresholds):
            raise ConfigError(f"{self.kind} strategy: {len(table)} rows of class thresholds for "
                              f"{len(self.thresholds)} non-final exits; give one row per exit")
        if len({len(row) for row in table}) > 1:
            raise ConfigError(f"{self.kind} strategy: rows of class thresholds differ in length; "
                              "give one threshold (or null) per class in every row")
        for k, row in enumerate(table):
            for c, t in enumerate(row):
                if t is not None and not math.isfinite(t):
                    raise ConfigError(f"{self.kind} strategy: class threshold [{k}][{c}] is {t}; "
                                      "thresholds must be finite (null: the exit never fires)")
        object.__setattr__(self, "class_thresholds", table)

    def validate(self, num_exits: int, num_classes: int, owner: str = "output strategy") -> None:
        super().validate(num_exits, num_classes, owner)
        lo, hi = self.policy.threshold_range(num_classes)
        for k, row in enumerate(self.class_thresholds):
            if len(row) != num_classes:
                raise ConfigError(f"{owner}: exit {k} has {len(row)} class thresholds for "
                                  f"{num_classes} classes")
            for c, t in enumerate(row):
                if t is not None and not lo <= t <= hi:
                    raise ConfigError(f"{owner}: class threshold [{k}][{c}] = {t} is outside "
                                      f"the {self.policy.name!r} policy's range [{lo:.4g}, "
                                      f"{hi:.4g}]")

    def fires_at(self, k: int, probs: np.ndarray) -> np.ndarray:
        probs = np.asarray(probs)
        if k >= self.num_exits - 1:
            return np.ones(len(probs), dtype=bool)
        row = np.array([np.nan if t is None else t for t in self.class_thresholds[k]])
        tau = row[probs.argmax(axis=1)] if len(probs) else np.zeros(0)
        never = np.isnan(tau)
        return self.policy.fires(self.policy.score(probs), np.where(never, 0.0, tau)) & ~never

    def exits(self, per_exit_probs: Sequence[np.ndarray]) -> np.ndarray:
        if len(per_exit_probs) != self.num_exits:
            raise ConfigError(f"output strategy has {self.num_exits} exits but got "
                              f"probabilities of {len(per_exit_probs)} exits")
        return staged_exits(self.fires_at, self.num_exits,
                            lambda k, rows: np.asarray(per_exit_probs[k])[rows],
                            len(per_exit_probs[0]))

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "kind": self.kind,
                "class_thresholds": [list(row) for row in self.class_thresholds]}


def staged_exits(fires_at: Callable[[int, np.ndarray], np.ndarray], num_exits: int,
                 probs_of: Callable[[int, np.ndarray], np.ndarray], n: int) -> np.ndarray:
    """Exit per row, asking ``probs_of(k, rows)`` only for rows still undecided at ``k``
    (a server's stage-by-stage evaluation; ``batch.exit_probs`` computes and charges)."""
    last = num_exits - 1
    exits = np.full(n, last, dtype=np.int64)
    undecided = np.arange(n)
    for k in range(last):
        if not len(undecided):
            break
        fired = np.asarray(fires_at(k, probs_of(k, undecided)), dtype=bool)
        exits[undecided[fired]] = k
        undecided = undecided[~fired]
    return exits


@dataclass(frozen=True)
class ConfidenceGuidedStrategy(PerClassStrategy):
    """CGR: PCE's decision with probability ``mix``, else an exit drawn from ``base``.

    :meth:`exits` is the decision the draws are biased toward (PCE's, moved into the
    support of ``base``); :meth:`draw_exits` is what the strategy serves.
    """

    mix: float = 1.0
    base: tuple[float, ...] = ()
    kind: ClassVar[str] = "cgr"

    def __post_init__(self) -> None:
        super().__post_init__()
        base = tuple(float(p) for p in self.base)
        if len(base) != self.num_exits:
            raise ConfigError(f"cgr strategy: base has {len(base)} exit shares for "
                              f"{self.num_exits} exits")
        if not all(math.isfinite(p) and p >= 0 for p in base) or not math.isclose(
                sum(base), 1.0, abs_tol=1e-6):
            raise ConfigError(f"cgr strategy: base {list(base)} is not a distribution over the "
                              "exits (non-negative, summing to 1)")
        if not (math.isfinite(self.mix) and 0.0 <= self.mix <= 1.0):
            raise ConfigError(f"cgr strategy: mix {self.mix} is not a probability in [0, 1]")
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "mix", float(self.mix))

    @property
    def support(self) -> np.ndarray:
        """Exits the random draws can reach (``base > 0``)."""
        return np.flatnonzero(np.asarray(self.base) > 0)

    @property
    def epsilon(self) -> float:
        """The local-DP level of the exit decision (inf when ``mix`` is 1)."""
        return cgr_epsilon(self.mix, self.base)

    def into_support(self, exits: np.ndarray) -> np.ndarray:
        """Each exit moved to the nearest exit of the support (the deeper one on a tie)."""
        support = self.support
        exits = np.asarray(exits, dtype=np.int64)
        gap = np.abs(exits[:, None] - support[None, :]) * 2 - (support[None, :] > exits[:, None])
        return support[np.argmin(gap, axis=1)] if len(exits) else exits

    def exits(self, per_exit_probs: Sequence[np.ndarray]) -> np.ndarray:
        return self.into_support(super().exits(per_exit_probs))

    def coins(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Per query: does it follow PCE (prob. ``mix``), and the exit drawn from ``base``
        otherwise. Both are drawn for every query, in this order, from ``rng``."""
        follow = rng.random(n) < self.mix
        drawn = rng.choice(self.num_exits, size=n, p=np.asarray(self.base)).astype(np.int64)
        return follow, drawn

    def draw_exits(self, per_exit_probs: Sequence[np.ndarray],
                   rng: np.random.Generator) -> np.ndarray:
        follow, drawn = self.coins(len(per_exit_probs[0]), rng)
        return np.where(follow, self.exits(per_exit_probs), drawn)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "mix": self.mix, "base": list(self.base)}


def cgr_epsilon(mix: float, base: Sequence[float]) -> float:
    """``ln(1 + mix / ((1 - mix) * min pi))`` over the support (0 with one exit reachable)."""
    support = [p for p in base if p > 0]
    if len(support) <= 1 or mix <= 0:
        return 0.0
    if mix >= 1:
        return math.inf
    return math.log1p(mix / ((1.0 - mix) * min(support)))


def cgr_mix(epsilon: float, base: Sequence[float]) -> float:
    """The largest ``mix`` whose exit decision is ``epsilon``-LDP for base shares ``base``:
    ``(e^eps - 1) pi_min / (1 + (e^eps - 1) pi_min)``."""
    support = [p for p in base if p > 0]
    if not support:
        raise ConfigError("cgr: the base distribution has no exit with a positive share")
    grow = math.expm1(float(epsilon)) * min(support)
    return 1.0 if math.isinf(grow) else grow / (1.0 + grow)


@dataclass(frozen=True)
class Calibration:
    """What a calibrated strategy was fitted on, and how it compares with the original."""

    strategy: PerClassStrategy
    targets: tuple[float, ...]
    counters: dict[str, float]


def exit_shares(exits: np.ndarray, num_exits: int) -> np.ndarray:
    """The share of inputs taking each exit."""
    exits = np.asarray(exits, dtype=np.int64)
    return np.bincount(exits, minlength=num_exits) / max(len(exits), 1)


def class_exit_imbalance(exits: np.ndarray, classes: np.ndarray, num_exits: int) -> float:
    """How much the exit says about the class: the class-weighted mean total variation
    between each class's exit histogram and the overall one (0 = balanced)."""
    exits, classes = np.asarray(exits, dtype=np.int64), np.asarray(classes)
    if not len(exits):
        return 0.0
    overall = exit_shares(exits, num_exits)
    total = 0.0
    for c in np.unique(classes):
        mine = classes == c
        tv = 0.5 * np.abs(exit_shares(exits[mine], num_exits) - overall).sum()
        total += mine.mean() * tv
    return float(total)


def _cut(conf: np.ndarray, hazard: float) -> float | None:
    """A confidence cut that lets ``round(hazard * n)`` of ``conf`` through (None: none)."""
    if hazard >= 1.0:
        return -math.inf  # every input fires (the threshold goes to the range's end)
    fire = round(hazard * len(conf))
    if fire <= 0 or not len(conf):
        return None
    s = np.sort(conf)[::-1]
    if fire >= len(s):
        return float(s[-1])
    hi, lo = float(s[fire - 1]), float(s[fire])
    return hi if hi == lo else 0.5 * (hi + lo)


def _threshold(policy: ExitPolicy, cut: float | None, num_classes: int) -> float | None:
    """A cut in confidence space as the policy's threshold, clipped to its range (where
    every score fires for an infinite cut)."""
    if cut is None:
        return None
    lo, hi = policy.threshold_range(num_classes)
    tau = cut if policy.higher_is_confident else -cut
    return float(min(max(tau, lo), hi))


def calibrate_per_class(strategy: OutputStrategy, per_exit_probs: Sequence[np.ndarray], *,
                        min_samples: int = 5,
                        cost_fraction: Sequence[float] | None = None) -> Calibration:
    """PCE's class-threshold table for ``strategy`` on the calibration probabilities.

    Targets are ``strategy``'s exit shares on these inputs. At exit ``k`` the share
    ``h_k = t_k / (t_k + ... + t_{K-1})`` of the still-undecided inputs should fire; for
    every class predicted at exit ``k`` by at least ``min_samples`` undecided inputs the
    threshold lets ``h_k`` of that class's inputs through, the others share the pooled
    threshold of all undecided inputs. The counters compare the original strategy with
    PCE on these inputs (mean cost with ``cost_fraction``; class imbalance by the final
    exit's predicted class, :func:`class_exit_imbalance`).
    """
    probs = [np.asarray(p, dtype=np.float64) for p in per_exit_probs]
    num_exits, n = len(probs), len(probs[0])
    if n == 0:
        raise ConfigError("per-class exiting needs calibration inputs; the server has none")
    num_classes = probs[0].shape[1]
    policy = strategy.policy
    original = strategy.exits(probs)
    targets = exit_shares(original, num_exits)
    undecided = np.ones(n, dtype=bool)
    table: list[tuple[float | None, ...]] = []
    for k in range(num_exits - 1):
        left = float(targets[k:].sum())
        hazard = 0.0 if left <= 0 else min(1.0, float(targets[k]) / left)
        conf = policy.confidence(policy.score(probs[k]))
        pred = probs[k].argmax(axis=1)
        pooled = _threshold(policy, _cut(conf[undecided], hazard), num_classes)
        row = []
        for c in range(num_classes):
            group = undecided & (pred == c)
            row.append(_threshold(policy, _cut(conf[group], hazard), num_classes)
                       if group.sum() >= min_samples else pooled)
        table.append(tuple(row))
        fired = PerClassStrategy(policy, strategy.thresholds[:k + 1],
                                 tuple(table)).fires_at(k, probs[k])
        undecided &= ~fired
    pce = PerClassStrategy(policy, strategy.thresholds, tuple(table))
    deployed = pce.exits(probs)
    final_class = probs[-1].argmax(axis=1)
    counters = {
        "calibration_samples": float(n),
        "imbalance_original": class_exit_imbalance(original, final_class, num_exits),
        "imbalance_deployed": class_exit_imbalance(deployed, final_class, num_exits),
        "exit_changed_share": float(np.mean(deployed != original)),
    }
    if cost_fraction is not None:
        cost = np.asarray(cost_fraction, dtype=np.float64)
        counters["mean_cost_original"] = float(cost[original].mean())
        counters["mean_cost_deployed"] = float(cost[deployed].mean())
    return Calibration(pce, tuple(float(t) for t in targets), counters)


def strategy_from_json(raw: Any, policy_of: Callable[[str], ExitPolicy]) -> OutputStrategy:
    """Any strategy of this module, or a plain one, from its :meth:`to_json` (``kind``);
    ``policy_of`` looks a policy up by name. Raises ConfigError, KeyError, TypeError or
    ValueError on a malformed document (the caller names whose it was)."""
    policy = policy_of(str(raw["policy"]))
    thresholds = tuple(float(t) for t in raw["thresholds"])
    kind = raw.get("kind")
    if kind is None:
        return OutputStrategy(policy, thresholds)
    table = tuple(tuple(None if t is None else float(t) for t in row)
                  for row in raw["class_thresholds"])
    if kind == PerClassStrategy.kind:
        return PerClassStrategy(policy, thresholds, table)
    if kind == ConfidenceGuidedStrategy.kind:
        return ConfidenceGuidedStrategy(policy, thresholds, table, mix=float(raw["mix"]),
                                        base=tuple(float(p) for p in raw["base"]))
    raise ConfigError(f"unknown strategy kind {kind!r}; known: "
                      f"{PerClassStrategy.kind!r}, {ConfidenceGuidedStrategy.kind!r}")
