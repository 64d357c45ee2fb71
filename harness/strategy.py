"""Output strategies: an exit policy plus one threshold per non-final exit.

A policy turns an exit's probability vectors into a per-sample *score* and fires when
the score passes the threshold in the policy's direction. ``max_prob`` (SDN) fires when
``max p >= tau``; ``entropy`` (BranchyNet) fires when ``H(p) <= tau``. The sample exits
at the first exit that fires; the final exit answers when none does.

Training toward a strategy (an attack's strategy loss) needs the score in a smooth,
unbounded space: a policy may implement :meth:`ExitPolicy.confidence_logit` (on torch
logits, differentiable), :meth:`ExitPolicy.confidence_logit_np` (on returned
probabilities) and :meth:`ExitPolicy.threshold_logit` (a threshold in that space).
The two built-in policies do; :attr:`ExitPolicy.trainable` says whether a policy does.
Policies are registered and looked up by name through the registry like every
component (``harness_register_exit_policies``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from harness.errors import ConfigError

LOGIT_EPS = 1e-6
"""``max_prob`` thresholds are clipped to ``[eps, 1 - eps]`` before their log-odds."""


def answering_probs(per_exit_probs: Sequence[np.ndarray], exits: np.ndarray) -> np.ndarray:
    """Row ``i`` of exit ``exits[i]``'s probabilities: what each sample is answered with."""
    exits = np.asarray(exits, dtype=np.int64)
    return np.stack(per_exit_probs)[exits, np.arange(len(exits))]


class ExitPolicy(ABC):
    """A vectorised exit rule; subclasses set ``name``, ``higher_is_confident`` and the range."""

    name: ClassVar[str] = ""
    higher_is_confident: ClassVar[bool] = True

    @abstractmethod
    def score(self, probs: np.ndarray) -> np.ndarray:
        """Per-sample score of ``probs`` with shape (n, classes) -> (n,)."""

    @abstractmethod
    def threshold_range(self, num_classes: int) -> tuple[float, float]:
        """Closed interval of meaningful thresholds for ``num_classes`` classes."""

    def fires(self, score: np.ndarray, threshold: float) -> np.ndarray:
        """Boolean mask: does the exit answer for these scores."""
        return score >= threshold if self.higher_is_confident else score <= threshold

    def confidence(self, score: np.ndarray) -> np.ndarray:
        """A monotone transform in which larger always means more confident."""
        return score if self.higher_is_confident else -score

    # -- optional: a smooth confidence space for training losses ----------------------
    def confidence_logit(self, logits: torch.Tensor) -> torch.Tensor:
        """Differentiable confidence per row of ``logits`` (larger = more confident)."""
        raise NotImplementedError(self._not_trainable())

    def confidence_logit_np(self, probs: np.ndarray) -> np.ndarray:
        """The same confidence from probability rows (float64), e.g. a victim's answers."""
        raise NotImplementedError(self._not_trainable())

    def threshold_logit(self, tau: float) -> float:
        """Threshold ``tau`` mapped into the :meth:`confidence_logit` space."""
        raise NotImplementedError(self._not_trainable())

    @classmethod
    def trainable(cls) -> bool:
        """Whether the policy implements the three training-space methods."""
        names = ("confidence_logit", "confidence_logit_np", "threshold_logit")
        return all(getattr(cls, n) is not getattr(ExitPolicy, n) for n in names)

    def _not_trainable(self) -> str:
        return (f"exit policy {self.name!r} has no training-space confidence; implement "
                "confidence_logit, confidence_logit_np and threshold_logit to train toward it "
                "(or turn the strategy loss off)")


@dataclass(frozen=True)
class OutputStrategy:
    """Exit policy + thresholds of the non-final exits (frozen; serialises to JSON)."""

    policy: ExitPolicy
    thresholds: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        for i, t in enumerate(self.thresholds):
            if not math.isfinite(t):
                raise ConfigError(f"output strategy: threshold {i} is {t}; thresholds must be finite")

    @property
    def num_exits(self) -> int:
        return len(self.thresholds) + 1

    def validate(self, num_exits: int, num_classes: int, owner: str = "output strategy") -> None:
        """Raise a :class:`ConfigError` when count or range does not fit the network."""
        if len(self.thresholds) != num_exits - 1:
            raise ConfigError(
                f"{owner}: got {len(self.thresholds)} thresholds for a {num_exits}-exit network; "
                f"give exactly {num_exits - 1} (one per non-final exit)"
            )
        lo, hi = self.policy.threshold_range(num_classes)
        for i, t in enumerate(self.thresholds):
            if not lo <= t <= hi:
                raise ConfigError(
                    f"{owner}: threshold {i} = {t} is outside the {self.policy.name!r} policy's "
                    f"range [{lo:.4g}, {hi:.4g}] for {num_classes} classes"
                )

    def exits(self, per_exit_probs: Sequence[np.ndarray]) -> np.ndarray:
        """Exit index per sample for probabilities of every exit, shape K x (n, classes)."""
        if len(per_exit_probs) != self.num_exits:
            raise ConfigError(
                f"output strategy has {self.num_exits} exits but got probabilities of "
                f"{len(per_exit_probs)} exits"
            )
        n = len(per_exit_probs[0])
        out = np.full(n, self.num_exits - 1, dtype=np.int64)
        undecided = np.ones(n, dtype=bool)
        for k, tau in enumerate(self.thresholds):
            fired = self.policy.fires(self.policy.score(np.asarray(per_exit_probs[k])), tau)
            take = undecided & fired
            out[take] = k
            undecided &= ~take
        return out

    def fires_at(self, k: int, probs: np.ndarray) -> np.ndarray:
        """Whether exit ``k`` answers for ``probs`` (step-by-step serving)."""
        if k >= self.num_exits - 1:
            return np.ones(len(probs), dtype=bool)
        return self.policy.fires(self.policy.score(np.asarray(probs)), self.thresholds[k])

    def draw_exits(self, per_exit_probs: Sequence[np.ndarray],
                   rng: np.random.Generator) -> np.ndarray:
        """The exits the strategy serves, drawing from ``rng`` when it is randomized
        (``harness.deployed``: confidence-guided randomness, whose :meth:`exits` is the
        decision its draws are biased toward; a deterministic strategy ignores ``rng``)."""
        return self.exits(per_exit_probs)

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy.name, "thresholds": list(self.thresholds)}


class MaxProbPolicy(ExitPolicy):
    """SDN: exit when the top-class probability reaches the threshold.

    Training space: the log-odds of the top class, ``log p_max - log(1 - p_max)``,
    computed stably from the logits.
    """

    name = "max_prob"
    higher_is_confident = True

    def score(self, probs: np.ndarray) -> np.ndarray:
        return np.asarray(probs).max(axis=1)

    def threshold_range(self, num_classes: int) -> tuple[float, float]:
        return (0.0, 1.0)

    def confidence_logit(self, logits: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=1)
        top = logp.max(dim=1)
        rest = logp.scatter(1, top.indices[:, None], float("-inf"))
        return top.values - torch.logsumexp(rest, dim=1)

    def confidence_logit_np(self, probs: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(probs, dtype=np.float64), 1e-300, 1.0)
        arg = p.argmax(axis=1)
        top = p[np.arange(len(p)), arg]
        others = p.copy()
        others[np.arange(len(p)), arg] = 0.0
        rest = np.clip(others.sum(axis=1), 1e-300, None)
        return np.log(top) - np.log(rest)

    def threshold_logit(self, tau: float) -> float:
        t = min(max(float(tau), LOGIT_EPS), 1.0 - LOGIT_EPS)
        return math.log(t) - math.log1p(-t)


class EntropyPolicy(ExitPolicy):
    """BranchyNet: exit when the prediction entropy (nats) falls to the threshold.

    Training space: the negative entropy ``-H(p)``.
    """

    name = "entropy"
    higher_is_confident = False

    def score(self, probs: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
        return -(p * np.log(p)).sum(axis=1)

    def threshold_range(self, num_classes: int) -> tuple[float, float]:
        return (0.0, math.log(num_classes))

    def confidence_logit(self, logits: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=1)
        return (logp.exp() * logp).sum(dim=1)

    def confidence_logit_np(self, probs: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(probs, dtype=np.float64), 1e-300, 1.0)
        return (p * np.log(p)).sum(axis=1)

    def threshold_logit(self, tau: float) -> float:
        return -float(tau)


BUILTIN_POLICIES: tuple[type[ExitPolicy], ...] = (MaxProbPolicy, EntropyPolicy)
