"""Strategy loss: targets, masking and the direction it pushes confidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attacks.strategy_loss import exit_targets, strategy_loss
from harness.errors import ConfigError
from harness.strategy import EntropyPolicy, ExitPolicy, MaxProbPolicy

MAX_PROB, ENTROPY = MaxProbPolicy(), EntropyPolicy()


def test_targets_cover_only_exits_a_sample_reached():
    target, mask = exit_targets(torch.tensor([0, 1, 2, 3]), 4)
    assert mask.tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1]]
    assert target.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]]


def test_max_prob_logit_is_stable_and_matches_numpy():
    logits = torch.tensor([[40.0, 0.0, 0.0], [1.0, 2.0, 0.5]])
    got = MAX_PROB.confidence_logit(logits).numpy()
    p = torch.softmax(logits.double(), 1).numpy()
    assert np.allclose(got, MAX_PROB.confidence_logit_np(p), atol=1e-4)
    assert got[0] == pytest.approx(40.0 - np.log(2.0), abs=1e-4)


def test_gradient_lowers_early_confidence_and_raises_it_at_the_exit():
    logits = [torch.tensor([[3.0, 0.0, 0.0]], requires_grad=True) for _ in range(3)]
    loss = strategy_loss(MAX_PROB, (0.9, 0.9))(logits, torch.tensor([1]))
    loss.backward()
    assert logits[0].grad[0, 0] > 0  # exit 0 (before the estimated exit): push top logit down
    assert logits[1].grad[0, 0] < 0  # exit 1 (the estimated exit): push it up
    assert torch.all(logits[2].grad == 0)  # the final exit has no BCE term


def test_confidence_regression_only_where_known():
    logits = [torch.zeros(2, 3, requires_grad=True) for _ in range(2)]
    fn = strategy_loss(MAX_PROB, (0.5,), confidence_weight=1.0)
    base = strategy_loss(MAX_PROB, (0.5,), confidence_weight=0.0)
    est = torch.tensor([0, 1])
    nan = torch.full((2,), float("nan"))
    assert fn(logits, est, nan).item() == pytest.approx(base(logits, est, nan).item())
    assert fn(logits, est, torch.tensor([5.0, 5.0])).item() > base(logits, est).item()


def test_entropy_policy_and_errors():
    assert ENTROPY.threshold_logit(0.3) == -0.3
    assert MAX_PROB.threshold_logit(0.5) == pytest.approx(0.0)
    logits = [torch.randn(4, 5) for _ in range(3)]
    assert torch.isfinite(strategy_loss(ENTROPY, (0.5, 0.2))(logits, torch.tensor([0, 1, 2, 2])))
    with pytest.raises(ConfigError, match="temperature"):
        strategy_loss(MAX_PROB, (0.5,), temperature=0)


class MarginPolicy(ExitPolicy):
    """A plugin-style policy without a training space."""

    name = "margin"

    def score(self, probs):
        top2 = np.sort(probs, axis=1)[:, -2:]
        return top2[:, 1] - top2[:, 0]

    def threshold_range(self, num_classes):
        return (0.0, 1.0)


def test_a_policy_without_training_space_is_refused_with_the_fix():
    assert MAX_PROB.trainable() and ENTROPY.trainable() and not MarginPolicy.trainable()
    with pytest.raises(ConfigError, match=r"'margin' has no training-space.*confidence_logit"):
        strategy_loss(MarginPolicy(), (0.5,))
