"""Seeded, deterministic mini-batch training of multi-exit networks.

:func:`train_loop` is the generic loop (Adam + cosine learning-rate decay, shuffling
from a private :class:`torch.Generator`): it feeds ``model(x)`` - the logits of every
exit - and the batch's other tensors to a pluggable loss function, so a distillation
trainer only supplies its own targets and loss. :func:`train_multi_exit` is the victim
trainer: an SDN-style weighted sum of per-exit cross-entropy losses.

SDN weights (Kaya et al., ICML 2019): exit ``k`` of ``K`` has weight ``(k + 1) / K``, its
relative depth, so the final exit weighs 1 and shallow exits, whose features are shared
with deeper ones, do not dominate. (SDN ramps the internal weights up to these values
during training; we use the final values throughout.)
On CPU, identical arguments give identical weights; the global torch RNG is untouched.
CPU results also depend on the intra-op thread count (reduction order), so the loop can
pin it (``num_threads``; the victims use 1, which is also far faster than spinning
OpenMP threads on a busy 2-core machine) and restores it afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness.model import MultiExitNet, exit_probabilities
from harness.protocol import Split

LossFn = Callable[..., torch.Tensor]
"""``loss_fn(exit_logits: list[Tensor], *batch_targets) -> scalar Tensor``."""


@dataclass(frozen=True)
class TrainHistory:
    """Mean training loss per epoch and wall-clock seconds spent."""

    epoch_losses: tuple[float, ...]
    seconds: float


def sdn_exit_weights(num_exits: int) -> tuple[float, ...]:
    """Loss weight of each exit: its relative depth ``(k + 1) / num_exits``."""
    return tuple((k + 1) / num_exits for k in range(num_exits))


def weighted_exit_loss(weights: Sequence[float]) -> LossFn:
    """Weighted sum of per-exit cross-entropy losses against integer labels."""
    w = tuple(float(v) for v in weights)

    def loss_fn(exit_logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        if len(exit_logits) != len(w):
            raise ValueError(f"{len(w)} exit weights for {len(exit_logits)} exits")
        return sum(wk * F.cross_entropy(z, labels) for wk, z in zip(w, exit_logits, strict=True))

    return loss_fn


def minibatch_indices(n: int, batch_size: int,
                      generator: torch.Generator) -> Iterator[torch.Tensor]:
    """One epoch of shuffled index batches (the last one may be smaller)."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (None leaves it unchanged)."""
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


EpochHook = Callable[[int, float], bool]
"""``on_epoch_end(epoch, mean_train_loss) -> stop``: called after every epoch."""


def train_loop(model: nn.Module, tensors: Sequence[torch.Tensor], loss_fn: LossFn, *,
               epochs: int, lr: float, batch_size: int, seed: int, device: str = "cpu",
               weight_decay: float = 0.0, num_threads: int | None = None,
               channels_last: bool = False,
               on_epoch_end: EpochHook | None = None) -> TrainHistory:
    """Train ``model`` on ``tensors`` (inputs first, then targets of equal length).

    Each step calls ``loss_fn(model(x), *targets)``. The model is moved to ``device``
    and left in eval mode. ``num_threads`` pins torch's CPU threads while training.
    ``on_epoch_end`` (e.g. validation for early stopping) ends training when it returns
    True; it must leave the model in train mode. It consumes nothing of the loop's RNG.
    ``channels_last`` trains image inputs (4-d) in NHWC memory order, which oneDNN's
    convolutions run faster on one CPU thread (same mathematics, other rounding); the
    model is returned in the default order.
    """
    nhwc = channels_last and tensors[0].dim() == 4
    with torch_threads(num_threads):
        if nhwc:
            model.to(memory_format=torch.channels_last)
        try:
            return _train_loop(model, tensors, loss_fn, epochs=epochs, lr=lr,
                               batch_size=batch_size, seed=seed, device=device,
                               weight_decay=weight_decay, nhwc=nhwc,
                               on_epoch_end=on_epoch_end)
        finally:
            if nhwc:
                model.to(memory_format=torch.contiguous_format)


def _train_loop(model: nn.Module, tensors: Sequence[torch.Tensor], loss_fn: LossFn, *,
                epochs: int, lr: float, batch_size: int, seed: int, device: str,
                weight_decay: float, nhwc: bool,
                on_epoch_end: EpochHook | None) -> TrainHistory:
    if epochs < 0 or batch_size < 1 or not lr > 0:
        raise ValueError("need epochs >= 0, batch_size >= 1 and lr > 0")
    n = len(tensors[0])
    if n == 0 or any(len(t) != n for t in tensors):
        raise ValueError("training tensors must be non-empty and of equal length")
    started = time.perf_counter()
    model.to(device)
    data = [t.to(device) for t in tensors]
    generator = torch.Generator().manual_seed(int(seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = -(-n // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, epochs * steps_per_epoch))
    losses = []
    model.train()
    for epoch in range(epochs):
        total = 0.0
        for idx in minibatch_indices(n, batch_size, generator):
            idx = idx.to(device)
            batch = [t[idx] for t in data]
            if nhwc:
                batch[0] = batch[0].contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(batch[0]), *batch[1:])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
        if on_epoch_end is not None and on_epoch_end(epoch, losses[-1]):
            break
    model.eval()
    return TrainHistory(tuple(losses), time.perf_counter() - started)


def train_multi_exit(model: MultiExitNet, train: Split, *, epochs: int, lr: float,
                     batch_size: int, seed: int, device: str = "cpu",
                     exit_weights: Sequence[float] | None = None,
                     weight_decay: float = 0.0, num_threads: int | None = None) -> TrainHistory:
    """SDN-style training on labelled data (weights default to :func:`sdn_exit_weights`)."""
    weights = sdn_exit_weights(model.num_exits) if exit_weights is None else exit_weights
    x = torch.as_tensor(np.ascontiguousarray(train.x, dtype=np.float32))
    y = torch.as_tensor(np.ascontiguousarray(train.y, dtype=np.int64))
    return train_loop(model, [x, y], weighted_exit_loss(weights), epochs=epochs, lr=lr,
                      batch_size=batch_size, seed=seed, device=device,
                      weight_decay=weight_decay, num_threads=num_threads)


def predict_exit_probs(model: MultiExitNet, x: np.ndarray, device: str = "cpu",
                       batch_size: int = 512) -> list[np.ndarray]:
    """Float32 softmax of every exit (threshold selection works on these)."""
    return exit_probabilities(model, x, device, batch_size, dtype=torch.float32)
