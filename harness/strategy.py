"""Output strategies: an exit policy plus one threshold per non-final exit.

A policy turns an exit's probability vectors into a per-sample *score* and fires when
the score passes the threshold in the policy's direction. ``max_prob`` (SDN) fires when
``max p >= tau``; ``entropy`` (BranchyNet) fires when ``H(p) <= tau``. The sample exits
at the first exit that fires; the final exit answers when none does.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from harness.errors import ConfigError


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

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy.name, "thresholds": list(self.thresholds)}
