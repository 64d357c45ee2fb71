"""Seeded multi-exit training and the generic, loss-pluggable loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from harness.nn.training import (
    predict_exit_probs,
    sdn_exit_weights,
    torch_threads,
    train_loop,
    train_multi_exit,
    weighted_exit_loss,
)
from harness.protocol import Split
from victims.architectures import SmallCNN


@pytest.fixture(scope="module")
def toy_split() -> Split:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    x = rng.random((96, 1, 8, 8), dtype=np.float32) * 0.3
    x[np.arange(96), 0, y * 2, :] += 0.7  # class = which row is bright
    return Split(x.astype(np.float32), y.astype(np.int64))


def _train(split: Split, seed: int, epochs: int = 2):
    net = SmallCNN(width=4).build((1, 8, 8), 3, 3, seed=0)
    history = train_multi_exit(net, split, epochs=epochs, lr=1e-2, batch_size=16, seed=seed,
                               num_threads=1)
    return net, history


def test_same_seed_gives_identical_weights(toy_split):
    before = torch.get_rng_state()
    a, ha = _train(toy_split, seed=3)
    b, hb = _train(toy_split, seed=3)
    c, _ = _train(toy_split, seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ha.epoch_losses == hb.epoch_losses
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())
    assert not a.training


def test_training_learns(toy_split):
    net, history = _train(toy_split, seed=0, epochs=8)
    assert history.epoch_losses[-1] < history.epoch_losses[0]
    probs = predict_exit_probs(net, toy_split.x)
    assert (probs[-1].argmax(1) == toy_split.y).mean() > 0.8


def test_sdn_weights_grow_with_depth():
    assert sdn_exit_weights(4) == (0.25, 0.5, 0.75, 1.0)


def test_weighted_loss_checks_exit_count():
    loss = weighted_exit_loss((1.0, 1.0))
    with pytest.raises(ValueError, match="exit weights"):
        loss([torch.zeros(2, 3)] * 3, torch.zeros(2, dtype=torch.long))


def test_train_loop_accepts_a_distillation_loss(toy_split):
    teacher, _ = _train(toy_split, seed=0, epochs=3)
    soft = [torch.as_tensor(p) for p in predict_exit_probs(teacher, toy_split.x)]
    student = SmallCNN(width=4).build((1, 8, 8), 3, 3, seed=1)

    def kd_loss(exit_logits, *targets):
        return sum(F.kl_div(F.log_softmax(z, 1), t, reduction="batchmean")
                   for z, t in zip(exit_logits, targets, strict=True))

    x = torch.as_tensor(toy_split.x)
    history = train_loop(student, [x, *soft], kd_loss, epochs=4, lr=1e-2, batch_size=32, seed=0,
                         num_threads=1)
    assert len(history.epoch_losses) == 4
    assert history.epoch_losses[-1] < history.epoch_losses[0]


def test_predict_exit_probs_are_distributions(toy_split):
    net = SmallCNN(width=4).build((1, 8, 8), 3, 3).train()
    probs = predict_exit_probs(net, toy_split.x, batch_size=40)
    assert net.training  # mode restored
    assert len(probs) == 3
    for p in probs:
        assert p.shape == (96, 3)
        np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)


def test_train_loop_rejects_bad_arguments(toy_split):
    net = SmallCNN(width=2).build((1, 8, 8), 3, 2)
    x, y = torch.as_tensor(toy_split.x), torch.as_tensor(toy_split.y)
    loss = weighted_exit_loss((1.0, 1.0))
    with pytest.raises(ValueError):
        train_loop(net, [x, y[:5]], loss, epochs=1, lr=0.1, batch_size=8, seed=0)
    with pytest.raises(ValueError):
        train_loop(net, [x, y], loss, epochs=1, lr=0.0, batch_size=8, seed=0)


def test_thread_count_is_restored():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
