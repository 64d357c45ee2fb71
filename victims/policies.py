"""Built-in exit policies: ``max_prob`` (SDN) and ``entropy`` (BranchyNet)."""

from __future__ import annotations

import math

import numpy as np

from harness.strategy import ExitPolicy


class MaxProbPolicy(ExitPolicy):
    """SDN: exit when the top-class probability reaches the threshold."""

    name = "max_prob"
    higher_is_confident = True

    def score(self, probs: np.ndarray) -> np.ndarray:
        return np.asarray(probs).max(axis=1)

    def threshold_range(self, num_classes: int) -> tuple[float, float]:
        return (0.0, 1.0)


class EntropyPolicy(ExitPolicy):
    """BranchyNet: exit when the prediction entropy (nats) falls to the threshold."""

    name = "entropy"
    higher_is_confident = False

    def score(self, probs: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
        return -(p * np.log(p)).sum(axis=1)

    def threshold_range(self, num_classes: int) -> tuple[float, float]:
        return (0.0, math.log(num_classes))


POLICIES: dict[str, type[ExitPolicy]] = {"max_prob": MaxProbPolicy, "entropy": EntropyPolicy}
"""The built-in policies by name (what ``policy=`` parameters accept)."""
