"""The shared substitute trainer: identical to train_loop without holdout, early stopping with."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from attacks.trainer import TrainRecipe, evaluate_loss, holdout_split, train_substitute
from harness.nn.training import train_loop


class TwoExits(nn.Module):
    """A tiny two-exit regressor-classifier (the trainer only needs ``model(x)`` lists)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        with torch.random.fork_rng():  # seeded init that leaves the global RNG as it was
            torch.manual_seed(seed)
            self.a = nn.Linear(6, 8)
            self.b = nn.Linear(8, 3)
            self.c = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return [self.b(h), self.c(h)]


def ce(exit_logits, y):
    return sum(F.cross_entropy(z, y) for z in exit_logits)


@pytest.fixture
def data():
    g = np.random.default_rng(0)
    x = g.normal(size=(120, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1).astype(np.int64)
    return torch.as_tensor(x), torch.as_tensor(y)


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_without_holdout_it_is_train_loop_bit_for_bit(data):
    a, b = TwoExits(1), TwoExits(1)
    report = train_substitute(a, list(data), ce, TrainRecipe(epochs=4, lr=0.01, batch_size=16,
                                                             seed=3))
    history = train_loop(b, list(data), ce, epochs=4, lr=0.01, batch_size=16, seed=3,
                         num_threads=1)
    assert torch.equal(weights(a), weights(b))
    assert report.epoch_losses == history.epoch_losses
    assert report.best_epoch is None and len(report.holdout_rows) == 0
    assert not a.training


def test_holdout_split_is_seeded_disjoint_and_degenerates_to_none():
    tr, va = holdout_split(50, 0.2, 7)
    assert len(va) == 10 and len(tr) == 40 and not set(tr) & set(va)
    assert np.array_equal(holdout_split(50, 0.2, 7)[1], va)
    assert not np.array_equal(holdout_split(50, 0.2, 8)[1], va)
    assert len(holdout_split(4, 0.2, 7)[1]) == 0  # floor(0.8) = 0 rows: no holdout
    assert len(holdout_split(50, 0.0, 7)[1]) == 0


def test_early_stopping_keeps_the_best_held_out_weights(data):
    x, y = data
    y = y.clone()
    y[::2] = torch.randint(0, 3, (60,), generator=torch.Generator().manual_seed(0))  # noise
    model = TwoExits(2)
    recipe = TrainRecipe(epochs=40, lr=0.05, batch_size=8, seed=0, holdout=0.25, patience=3)
    report = train_substitute(model, [x, y], ce, recipe)
    assert len(report.holdout_rows) == 30
    assert report.epochs_run < 40  # stopped: it overfits the noisy labels
    assert report.epochs_run == report.best_epoch + 1 + 3
    held = torch.as_tensor(report.holdout_rows)
    restored = evaluate_loss(model, [x[held], y[held]], ce, "cpu")
    assert restored == pytest.approx(min(report.holdout_losses), rel=1e-6)
    assert report.to_json()["best_epoch"] == report.best_epoch


def test_patience_zero_runs_every_epoch_but_restores_the_best(data):
    model = TwoExits(2)
    report = train_substitute(model, list(data), ce, TrainRecipe(
        epochs=6, lr=0.05, batch_size=8, seed=0, holdout=0.25))
    assert report.epochs_run == 6 and len(report.holdout_losses) == 6
    assert report.best_epoch == int(np.argmin(report.holdout_losses))


def test_progress_is_logged_at_debug_level(data, caplog):
    with caplog.at_level(logging.DEBUG, logger="attacks.trainer"):
        train_substitute(TwoExits(1), list(data), ce,
                         TrainRecipe(epochs=2, lr=0.01, batch_size=32, seed=0, label="probe"))
    lines = [r.getMessage() for r in caplog.records if r.name == "attacks.trainer"]
    assert any("probe: epoch 2/2" in m for m in lines) and any("120 rows" in m for m in lines)


def test_bad_recipes_and_data_are_refused(data):
    with pytest.raises(ValueError, match="holdout"):
        TrainRecipe(epochs=1, lr=0.1, batch_size=1, seed=0, holdout=1.0)
    with pytest.raises(ValueError, match="lr > 0"):
        TrainRecipe(epochs=1, lr=0.0, batch_size=1, seed=0)
    with pytest.raises(ValueError, match="equal length"):
        train_substitute(TwoExits(0), [data[0], data[1][:5]], ce,
                         TrainRecipe(epochs=1, lr=0.1, batch_size=4, seed=0))


class ConvExits(nn.Module):
    """A tiny two-exit conv net on 1x6x6 images (the path ``channels_last`` speeds up).

    No conv bias before BatchNorm (as in the real networks): its true gradient is 0, and
    Adam turns the rounding noise there into full +-lr steps, whatever the memory order."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4),
                                      nn.ReLU())
            self.head_a = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
            self.head_b = nn.Sequential(nn.Flatten(), nn.Linear(4 * 36, 3))

    def forward(self, x):
        h = self.conv(x)
        return [self.head_a(h), self.head_b(h)]


def test_image_batches_train_in_channels_last_and_come_back_in_default_order(data):
    x = data[0][:, :1, None, None].repeat(1, 1, 6, 6) * torch.linspace(0, 1, 36).view(1, 1, 6, 6)
    tensors = [x.contiguous(), data[1]]
    recipe = TrainRecipe(epochs=3, lr=0.01, batch_size=16, seed=2)
    a, b, plain = ConvExits(0), ConvExits(0), ConvExits(0)
    train_substitute(a, tensors, ce, recipe)
    train_loop(b, tensors, ce, epochs=3, lr=0.01, batch_size=16, seed=2, num_threads=1,
               channels_last=True)
    train_loop(plain, tensors, ce, epochs=3, lr=0.01, batch_size=16, seed=2, num_threads=1)
    assert torch.equal(weights(a), weights(b))  # the trainer is train_loop in channels_last
    assert all(p.is_contiguous() for p in a.parameters())  # handed back in NCHW order
    # the same mathematics in another memory order: other rounding, same training
    assert torch.allclose(weights(a), weights(plain), atol=1e-5)
    c = ConvExits(0)
    train_substitute(c, tensors, ce, recipe)
    assert torch.equal(weights(a), weights(c))  # and deterministic
