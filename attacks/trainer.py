"""The one substitute trainer every attack trains through.

An attack hands :func:`train_substitute` its network, its training tensors (inputs
first, then per-row targets of equal length), a loss ``loss(exit_logits, *targets)``
and a :class:`TrainRecipe`. The optimisation itself is the project's
:func:`harness.nn.training.train_loop` (Adam + cosine decay over all planned steps,
shuffling from a private ``torch.Generator`` seeded by ``recipe.seed``, one CPU thread so
results do not depend on the machine's thread count, image batches in ``channels_last``
order, which oneDNN's convolutions run about 15-25% faster on one core); this module adds
what attacks need on top of it:

* **Early stopping on the attacker's own queries.** With ``holdout > 0`` a seeded
  fraction of the rows is held out (never trained on); after every epoch the loss on
  them is measured, the weights with the lowest held-out loss are kept and restored at
  the end, and with ``patience >= 1`` training stops after that many epochs without
  improvement. The cosine schedule still spans ``epochs``: stopping cuts it short, it
  does not compress it. With ``holdout == 0`` (or too few rows to split) every row is
  trained on for every epoch, exactly as ``train_loop`` alone would.
* **Progress**: one ``logging`` debug line per epoch (logger ``attacks.trainer``).
* **A report** (:class:`TrainReport`) of losses, the best epoch and which rows were held
  out, for diagnostics and for rules that need unseen rows (e.g. a threshold choice).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.nn.training import train_loop

LOG = logging.getLogger("attacks.trainer")

LossFn = Callable[..., torch.Tensor]
"""``loss(exit_logits: list[Tensor], *targets) -> scalar Tensor`` (a batch mean)."""

HOLDOUT_STREAM = 0x5EED
"""Stream of ``numpy.random.default_rng([seed, stream])`` that draws the held-out rows."""

EVAL_BATCH = 1024


@dataclass(frozen=True)
class TrainRecipe:
    """How to train one pass: optimiser settings, seed, device and early stopping.

    ``holdout`` is the fraction of rows held out for validation (0 = none); ``patience``
    the epochs without a better held-out loss before stopping (0 = run every epoch but
    still restore the best weights). ``label`` names the pass in log lines.
    """

    epochs: int
    lr: float
    batch_size: int
    seed: int
    device: str = "cpu"
    holdout: float = 0.0
    patience: int = 0
    label: str = "substitute"

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"train recipe {self.label!r}: need epochs >= 0, batch_size >= 1 "
                             f"and lr > 0, got {self.epochs}, {self.batch_size}, {self.lr}")
        if not 0.0 <= self.holdout < 1.0 or self.patience < 0:
            raise ValueError(f"train recipe {self.label!r}: need 0 <= holdout < 1 and "
                             f"patience >= 0, got {self.holdout}, {self.patience}")


@dataclass(frozen=True)
class TrainReport:
    """What one pass did: per-epoch losses, the restored epoch, the held-out rows."""

    epoch_losses: tuple[float, ...]
    holdout_losses: tuple[float, ...]
    best_epoch: int | None
    holdout_rows: np.ndarray
    seconds: float

    @property
    def epochs_run(self) -> int:
        return len(self.epoch_losses)

    def to_json(self) -> dict[str, Any]:
        """Diagnostics: epochs run, last losses, the restored epoch, rows held out."""
        return {"epochs_run": self.epochs_run,
                "final_train_loss": self.epoch_losses[-1] if self.epoch_losses else None,
                "best_holdout_loss": (min(self.holdout_losses) if self.holdout_losses
                                      else None),
                "best_epoch": self.best_epoch, "holdout_rows": len(self.holdout_rows)}


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows): a seeded ``floor(fraction * n)`` rows held out, or
    none when that leaves no row on either side."""
    n_val = int(np.floor(fraction * n))
    if n_val < 1 or n - n_val < 1:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    order = np.random.default_rng([int(seed), HOLDOUT_STREAM]).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def evaluate_loss(model: torch.nn.Module, tensors: Sequence[torch.Tensor], loss_fn: LossFn,
                  device: str) -> float:
    """Row-weighted mean of ``loss_fn`` over ``tensors`` in eval mode, without gradients."""
    was_training = model.training
    model.eval()
    total, n = 0.0, len(tensors[0])
    with torch.no_grad():
        for start in range(0, n, EVAL_BATCH):
            batch = [t[start:start + EVAL_BATCH].to(device) for t in tensors]
            total += float(loss_fn(model(batch[0]), *batch[1:])) * len(batch[0])
    model.train(was_training)
    return total / n


def train_substitute(model: torch.nn.Module, tensors: Sequence[torch.Tensor], loss_fn: LossFn,
                     recipe: TrainRecipe) -> TrainReport:
    """Train ``model`` in place on ``tensors`` with ``loss_fn`` by ``recipe`` (module doc)."""
    started = time.perf_counter()
    n = len(tensors[0])
    if n == 0 or any(len(t) != n for t in tensors):
        raise ValueError(f"train recipe {recipe.label!r}: training tensors must be non-empty "
                         f"and of equal length, got {[len(t) for t in tensors]}")
    train_rows, val_rows = holdout_split(n, recipe.holdout, recipe.seed)
    if len(val_rows):
        keep = torch.as_tensor(train_rows)
        fit = [t[keep] for t in tensors]
        val = [t[torch.as_tensor(val_rows)] for t in tensors]
    else:
        fit, val = list(tensors), []
    val_losses: list[float] = []
    best: dict[str, Any] = {"loss": float("inf"), "epoch": None, "state": None, "since": 0}

    def on_epoch_end(epoch: int, train_loss: float) -> bool:
        if not val:
            LOG.debug("%s: epoch %d/%d train loss %.5g", recipe.label, epoch + 1,
                      recipe.epochs, train_loss)
            return False
        loss = evaluate_loss(model, val, loss_fn, recipe.device)
        val_losses.append(loss)
        if loss < best["loss"]:
            best.update(loss=loss, epoch=epoch, since=0,
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})
        else:
            best["since"] += 1
        LOG.debug("%s: epoch %d/%d train loss %.5g held-out loss %.5g (best %.5g at %s)",
                  recipe.label, epoch + 1, recipe.epochs, train_loss, loss, best["loss"],
                  best["epoch"])
        return 0 < recipe.patience <= best["since"]

    history = train_loop(model, fit, loss_fn, epochs=recipe.epochs, lr=recipe.lr,
                         batch_size=recipe.batch_size, seed=recipe.seed, device=recipe.device,
                         num_threads=1 if recipe.device == "cpu" else None, channels_last=True,
                         on_epoch_end=on_epoch_end)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    report = TrainReport(history.epoch_losses, tuple(val_losses), best["epoch"], val_rows,
                         time.perf_counter() - started)
    LOG.debug("%s: %d rows (%d held out), %d epochs in %.2fs", recipe.label, n, len(val_rows),
              report.epochs_run, report.seconds)
    return report
