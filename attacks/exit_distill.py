"""Exit-aware distillation: match the victim's logits at the exit that answered.

With ``output=probs`` the vector returned for query ``i`` is the softmax of the victim's
exit ``e_i`` (``e_i`` = the estimated exit), computed in float64 by the server, so its
log-probabilities recover that exit's logits up to a constant, including the tiny
probabilities that carry the "dark knowledge" (Ba & Caruana 2014; Hinton et al. 2015).
The performance loss therefore regresses the substitute's exit-``e_i`` centred
log-softmax onto the victim's centred log-probabilities (clipped at ``-clip`` nats):

``L_exit = mean_i || c(log softmax(z_{e_i}(x_i))) - c(max(log p_i, -clip)) ||^2 / C``

with ``c(v) = v - mean(v)``. Unlike soft cross-entropy, whose gradient ``p_sub - p_vic``
vanishes near the victims' thresholds (max-probabilities of 0.99-0.999), this transfers
*how* confident the victim's exit was, which is what decides where a sample exits.
Exits other than ``e_i`` get ``other_weight`` times the soft cross-entropy toward
``p_i`` (0 by default: the returned vector says nothing reliable about them; the
strategy loss of :mod:`attacks.strategy_loss` covers exits ``k < e_i``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from attacks.substitute import Transcript
from attacks.trainer import TrainRecipe, TrainReport, train_substitute
from harness.model import MultiExitNet


def exit_logit_loss(other_weight: float = 0.0) -> Callable[..., torch.Tensor]:
    """``loss(exit_logits, target_logp, target_p, estimated_exits)`` (module docstring)."""

    def loss(exit_logits: list[torch.Tensor], target_logp: torch.Tensor, target_p: torch.Tensor,
             estimated: torch.Tensor) -> torch.Tensor:
        n = len(estimated)
        goal = target_logp - target_logp.mean(dim=1, keepdim=True)
        total = exit_logits[0].new_zeros(())
        for k, z in enumerate(exit_logits):
            here = (estimated == k).to(z.dtype)
            logp = F.log_softmax(z, dim=1)
            mse = ((logp - logp.mean(dim=1, keepdim=True) - goal) ** 2).mean(dim=1)
            total = total + (here * mse).sum() / n
            if other_weight > 0:
                total = total + other_weight * ((1 - here) * -(target_p * logp).sum(1)).sum() / n
        return total

    return loss


def train_exit_distillation(model: MultiExitNet, rows: Transcript, estimated: np.ndarray,
                            recipe: TrainRecipe, *, other_weight: float = 0.0,
                            clip: float = 30.0,
                            extra_loss: Callable[..., torch.Tensor] | None = None,
                            extra_targets: tuple[torch.Tensor, ...] = ()) -> TrainReport:
    """Train on admitted probability rows through the shared trainer
    (:mod:`attacks.trainer`); ``extra_loss(exit_logits, est, *extra)`` is added."""
    x = torch.as_tensor(np.ascontiguousarray(rows.x, dtype=np.float32))
    probs = np.asarray(rows.outputs, dtype=np.float64)
    logp = torch.as_tensor(np.maximum(np.log(np.clip(probs, 1e-300, 1.0)), -clip),
                           dtype=torch.float32)
    p = torch.as_tensor(probs, dtype=torch.float32)
    est = torch.as_tensor(np.asarray(estimated, dtype=np.int64))
    base = exit_logit_loss(other_weight)

    def loss(exit_logits, t_logp, t_p, t_est, *rest):
        value = base(exit_logits, t_logp, t_p, t_est)
        return value + extra_loss(exit_logits, t_est, *rest) if extra_loss is not None else value

    return train_substitute(model, [x, logp, p, est, *extra_targets], loss, recipe)
