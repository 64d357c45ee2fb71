"""Knockoff Nets' adaptive sampling: a gradient bandit over clusters of the pool.

Orekondy et al. (CVPR 2019, section 4.1.2) pick each query's *action* (here: a k-means
cluster of the attacker's unlabeled pool; the paper uses the pool's label hierarchy,
which an unlabeled pool does not have) with a softmax policy ``pi = softmax(H)`` over
action preferences ``H`` and update it by the gradient-bandit rule (Sutton & Barto,
section 2.8) with the reward ``r`` of the answer:

``H(z) <- H(z) + alpha * (r - r_bar) * (1[z = a] - pi(z))``

where ``r_bar`` is the running mean reward (the baseline). The paper's rewards:

* **certainty** ``P(y_1|x) - P(y_2|x)``: the margin of the victim's top two classes;
* **diversity** ``sum_k max(0, y_k - mu_k)``: how far the answer lies above the running
  mean ``mu`` of earlier answers (the paper's window is all earlier answers here);
* **loss** ``-sum_k y_k log q_k``: cross-entropy of the current substitute's answer
  ``q`` against the victim's ``y`` (how much the substitute still has to learn there).

With ``output=label`` the answer is a one-hot vector: certainty would always be 1 and
says nothing, so only **diversity** (over one-hot labels) and **loss** (the substitute's
cross-entropy on the label) are used (:data:`LABEL_REWARDS`).

Every reward is normalised to ``[0, 1]`` by the running minimum and maximum of that
reward so far (0 while they are equal) and the used rewards are averaged, so the bandit
sees one finite reward in ``[0, 1]`` whatever the answers are: answers are first mapped
onto the simplex (:func:`as_distributions`: negative or non-finite entries to 0, rows
renormalised, all-zero rows to uniform) and the substitute's probabilities are clipped
before their log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

REWARDS = ("certainty", "diversity", "loss")
LABEL_REWARDS = ("diversity", "loss")
PROB_FLOOR = 1e-12
"""Substitute probabilities are clipped to this before the log of the loss reward."""


def used_rewards(rewards: str, output: str) -> tuple[str, ...]:
    """The rewards a ``rewards`` setting uses under ``output`` (ValueError if none can)."""
    wanted = REWARDS if rewards == "all" else (rewards,)
    allowed = REWARDS if output == "probs" else LABEL_REWARDS
    used = tuple(r for r in wanted if r in allowed)
    if not used:
        raise ValueError(f"reward {rewards!r} needs output=probs (labels carry no margin); "
                         f"with output={output} use rewards=all, diversity or loss")
    return used


def as_distributions(outputs: np.ndarray, num_classes: int) -> np.ndarray:
    """Answers as probability rows: labels one-hot; probability rows cleaned onto the
    simplex (non-finite or negative entries 0, renormalised, all-zero rows uniform)."""
    outputs = np.asarray(outputs)
    if outputs.ndim == 1:
        labels = np.clip(outputs.astype(np.int64), 0, num_classes - 1)
        return np.eye(num_classes)[labels]
    p = np.asarray(outputs, dtype=np.float64)
    p = np.where(np.isfinite(p) & (p > 0), p, 0.0)
    p = np.minimum(p, np.finfo(np.float64).max / (4 * max(p.shape[1], 1)))
    total = p.sum(axis=1, keepdims=True)
    uniform = np.full_like(p, 1.0 / p.shape[1])
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), uniform)


def raw_rewards(victim: np.ndarray, substitute: np.ndarray, mean: np.ndarray,
                kinds: Sequence[str]) -> np.ndarray:
    """(n, len(kinds)) unnormalised rewards; ``victim`` and ``substitute`` are rows on the
    simplex, ``mean`` the running mean answer."""
    cols = []
    for kind in kinds:
        if kind == "certainty":
            top2 = np.sort(victim, axis=1)[:, -2:] if victim.shape[1] > 1 else \
                np.hstack([np.zeros((len(victim), 1)), victim])
            cols.append(top2[:, 1] - top2[:, 0])
        elif kind == "diversity":
            cols.append(np.maximum(victim - mean[None, :], 0.0).sum(axis=1))
        elif kind == "loss":
            q = np.clip(np.nan_to_num(substitute, nan=0.0), PROB_FLOOR, 1.0)
            cols.append(-(victim * np.log(q)).sum(axis=1))
        else:
            raise ValueError(f"unknown knockoff reward {kind!r}; known: {', '.join(REWARDS)}")
    return np.stack(cols, axis=1) if cols else np.zeros((len(victim), 0))


@dataclass(frozen=True)
class RewardScale:
    """Running minimum and maximum of each reward, for min-max normalisation."""

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def empty(cls, kinds: int) -> RewardScale:
        return cls(np.full(kinds, np.inf), np.full(kinds, -np.inf))

    def observe(self, raw: np.ndarray) -> RewardScale:
        return RewardScale(np.minimum(self.low, raw), np.maximum(self.high, raw))

    def normalise(self, raw: np.ndarray) -> float:
        """Mean of the rewards scaled to ``[0, 1]`` (0 where a reward's range is empty)."""
        span = self.high - self.low
        ok = np.isfinite(span) & (span > 0)
        scaled = np.where(ok, (raw - self.low) / np.where(ok, span, 1.0), 0.0)
        return float(np.clip(scaled, 0.0, 1.0).mean()) if len(raw) else 0.0


@dataclass(frozen=True)
class BanditState:
    """Action preferences ``H``, the running mean reward and the number of updates."""

    preferences: np.ndarray
    baseline: float = 0.0
    steps: int = 0

    @classmethod
    def initial(cls, actions: int) -> BanditState:
        return cls(np.zeros(actions))

    def policy(self) -> np.ndarray:
        """``softmax(H)``, computed stably."""
        z = self.preferences - self.preferences.max()
        e = np.exp(z)
        return e / e.sum()

    def update(self, action: int, reward: float, alpha: float) -> BanditState:
        """One gradient-bandit step for ``reward`` of ``action`` (module docstring)."""
        pi = self.policy()
        onehot = np.zeros_like(pi)
        onehot[action] = 1.0
        step = alpha * (reward - self.baseline) * (onehot - pi)
        steps = self.steps + 1
        return BanditState(self.preferences + step,
                           self.baseline + (reward - self.baseline) / steps, steps)

