"""Exit-aware logit matching: zero at the victim's logits, only the answering exit learns."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attacks.exit_distill import exit_logit_loss


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(-5, 5))
def test_zero_loss_at_victim_logits_up_to_a_constant(seed, shift):
    gen = torch.Generator().manual_seed(seed)
    victim = torch.randn(6, 5, generator=gen) * 4
    logp = torch.log_softmax(victim, dim=1)
    est = torch.tensor([0, 1, 2, 0, 1, 2])
    logits = [victim + shift for _ in range(3)]
    loss = exit_logit_loss()(logits, logp, logp.exp(), est)
    assert float(loss) < 1e-9


def test_only_the_answering_exit_gets_gradient():
    logits = [torch.zeros(4, 3, requires_grad=True) for _ in range(3)]
    target = torch.log_softmax(torch.tensor([[3.0, 0, 0]] * 4), dim=1)
    est = torch.tensor([1, 1, 2, 2])
    exit_logit_loss()(logits, target, target.exp(), est).backward()
    assert logits[0].grad.abs().sum() == 0
    assert logits[1].grad[:2].abs().sum() > 0 and logits[1].grad[2:].abs().sum() == 0
    assert logits[2].grad[2:].abs().sum() > 0
    logits = [torch.zeros(4, 3, requires_grad=True) for _ in range(3)]
    exit_logit_loss(other_weight=0.5)(logits, target, target.exp(), est).backward()
    assert logits[0].grad.abs().sum() > 0


def test_confident_targets_are_matched_in_log_space():
    """Soft CE hardly separates 0.999 from 0.99; logit matching does."""
    target = torch.log(torch.tensor([[0.999, 0.0005, 0.0005]], dtype=torch.float64)).float()
    near = torch.log(torch.tensor([[0.99, 0.005, 0.005]]))
    est = torch.tensor([0])
    loss = exit_logit_loss()([near], target, target.exp(), est)
    assert float(loss) > 1.0
    assert np.isfinite(float(loss))
