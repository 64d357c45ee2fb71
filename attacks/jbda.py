"""``jbda``: Jacobian-based dataset augmentation (Papernot et al., AsiaCCS 2017).

A label-only attack that grows its own queries instead of drawing them from a pool:

1. ``seed_size`` inputs are drawn from the attacker's pool and labelled by the victim
   (top-1: the argmax of returned probabilities, or the label with ``output=label``).
2. For ``rounds`` augmentation rounds: the substitute is trained ``round_epochs`` more
   epochs on every labelled input (through the shared trainer), then every labelled
   input ``x`` with victim label ``y`` yields one new query
   ``x + lambda_r * sign(d z_y(x) / dx)``: a step along the sign of the gradient of the
   substitute's final-exit logit for ``y``, clipped to ``ctx.input_range``. The step
   ``lambda_r = step * (hi - lo)`` (``step`` is a fraction of the input range's width;
   the paper's lambda = 0.1 on [0, 1] inputs) flips sign every ``flip_every`` rounds
   (the paper's periodic step tau; 0 = never). The labelled set thus doubles each round.
3. **Budget**: a round whose new inputs exceed what is left is truncated to a seeded
   random subset of them; the attack stops when the budget is spent or the rounds are
   done, so it may use less than the budget (``queries`` in diagnostics says how many).

Refused queries (a query monitor) get no label and are neither trained on nor
augmented. The interim substitute is fine-tuned across rounds rather than retrained
from scratch as in the paper (cheaper; it only steers the augmentation); the final
substitute is trained afresh for ``epochs`` on every labelled input, and its strategy is
the baselines' global threshold (:mod:`attacks.baseline`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from attacks.baseline import COMMON_CONSTRAINTS, BaselineAttack
from attacks.substitute import Transcript, concat_transcripts, draw_pool_indices, query_inputs
from attacks.substitute import victim_labels as labels_of
from harness.model import MultiExitNet
from harness.params import Interval
from harness.protocol import AttackContext, OracleHandle, StolenModel

GRAD_BATCH = 256


def label_gradient_sign(model: MultiExitNet, x: np.ndarray, labels: np.ndarray,
                        device: str) -> np.ndarray:
    """``sign(d z_y(x) / dx)`` of the final exit's logit for each row's label."""
    was_training = model.training
    model.to(device).eval()
    out = []
    try:
        for start in range(0, len(x), GRAD_BATCH):
            xb = torch.as_tensor(np.ascontiguousarray(x[start:start + GRAD_BATCH],
                                                      dtype=np.float32)).to(device)
            xb.requires_grad_(True)
            yb = torch.as_tensor(labels[start:start + GRAD_BATCH], dtype=torch.int64,
                                 device=device)
            logits = model(xb)[-1]
            logits.gather(1, yb[:, None]).sum().backward()
            out.append(torch.sign(xb.grad).cpu().numpy())
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return np.concatenate(out).astype(np.float32) if out else np.zeros_like(x, np.float32)


class JbdaAttack(BaselineAttack):
    """Jacobian-based dataset augmentation from a small seed set; label-only queries."""

    name = "jbda"
    label_only = True
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **COMMON_CONSTRAINTS,
        "seed_size": [Interval("int", 1, 10_000_000)],
        "rounds": [Interval("int", 0, 64)],
        "step": [Interval("real", 0, 1, closed="right")],
        "flip_every": [Interval("int", 0, 10_000)],
        "round_epochs": [Interval("int", 0, 100_000)],
    }

    def __init__(self, seed_size: int = 50, rounds: int = 4, step: float = 0.1,
                 flip_every: int = 0, round_epochs: int = 10, epochs: int = 30,
                 lr: float = 3e-3, batch_size: int = 64, architecture: str | None = None,
                 architecture_params: dict | None = None, max_drop: float = 0.01,
                 threshold: float | None = None, holdout: float = 0.0,
                 patience: int = 0) -> None:
        self.seed_size = seed_size
        self.rounds = rounds
        self.step = step
        self.flip_every = flip_every
        self.round_epochs = round_epochs
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.architecture = architecture
        self.architecture_params = architecture_params
        self.max_drop = max_drop
        self.threshold = threshold
        self.holdout = holdout
        self.patience = patience

    def step_size(self, round_index: int, ctx: AttackContext) -> float:
        """``lambda_r``: ``step`` times the input range's width, sign-flipped periodically."""
        lo, hi = ctx.input_range
        sign = -1.0 if self.flip_every and (round_index // self.flip_every) % 2 else 1.0
        return sign * self.step * (hi - lo)

    def steal(self, oracle: OracleHandle, attacker_data, ctx: AttackContext) -> StolenModel:
        pool = np.asarray(attacker_data)
        start = oracle.queries_used
        budget = self.available_budget(oracle, ctx)
        rng = ctx.rng(0)
        lo, hi = ctx.input_range
        new = pool[draw_pool_indices(min(self.seed_size, budget), len(pool), rng)]
        interim = self.new_substitute(ctx)
        parts: list[Transcript] = []
        truncated = False
        for r in range(self.rounds + 1):
            left = budget - (oracle.queries_used - start)
            if left <= 0 or len(new) == 0:
                break
            if len(new) > left:  # the last affordable round: a seeded random subset
                new, truncated = new[np.sort(rng.permutation(len(new))[:left])], True
            parts.append(query_inputs(oracle, np.ascontiguousarray(new, dtype=np.float32)))
            if r == self.rounds or truncated:
                break
            labelled = self.as_targets(concat_transcripts(parts), ctx)
            self.fit(interim, labelled, ctx, self.round_epochs, ctx.seed + 1 + r,
                     f"interim round {r + 1}", early_stopping=False)
            grad = label_gradient_sign(interim, labelled.x, labels_of(labelled.outputs),
                                       ctx.device)
            new = np.clip(labelled.x + self.step_size(r, ctx) * grad, lo, hi).astype(np.float32)
        rows = concat_transcripts(parts)
        return self.finish(rows, ctx, oracle.queries_used - start,
                           {"seed_size": len(parts[0].x) if parts else 0,
                            "rounds_run": max(len(parts) - 1, 0), "truncated": truncated,
                            "labelled_inputs": int(np.sum(rows.admitted))})
