"""Strategy loss: make a substitute's exit-wise confidence reproduce estimated exits.

A sample with estimated victim exit ``e`` passed every exit ``k < e`` without firing and
fired at ``e``. For each non-final exit ``k <= e`` this is a binary target
``y_ik = [e_i == k]`` ("exit here or not"); samples with ``e < k`` never reach ``k`` and
carry no target there. The substitute's confidence at exit ``k`` is mapped to a logit

* ``max_prob``: ``g(p) = log p_max - log(1 - p_max)`` (the log-odds of the top class,
  computed stably from the logits), threshold ``tau`` maps to ``log tau - log(1 - tau)``;
* ``entropy``: ``g(p) = -H(p)`` and ``tau`` maps to ``-tau``;

and the loss is the mean binary cross-entropy over all ``(i, k)`` pairs with a target:

``L_strategy = mean_{(i,k): k <= e_i, k < K-1} BCE(sigmoid((g_k(x_i) - g(tau_k)) / T), y_ik)``

with per-exit shifts ``tau_k`` (the thresholds an output strategy search found on the
substitute so far) and a temperature ``T``. It pushes the confidence at exits ``k < e``
below the exit's threshold and the confidence at ``e`` above it; a hinge would stop
at the margin, the BCE keeps ordering samples, which is what a later threshold search
needs. The final exit always answers, so it has no BCE term.

With ``output=probs`` the returned vector *is* the victim's exit-``e`` output (float64),
so the victim's confidence there, ``c_i = g(p_victim)``, is known exactly. A
confidence-regression term makes the substitute's exit ``e`` reproduce it:

``L_conf = mean_i smoothL1(g_{e_i}(x_i) - clip(c_i, -C, C))``

(Huber, ``C = 30``; samples without ``c_i`` - labels only - are masked). The total is
``L_strategy = L_bce + confidence_weight * L_conf``. Plain soft cross-entropy barely
constrains confidence near 1 (its gradient ``p_sub - p_victim`` vanishes there), while
victims' thresholds sit at log-odds 3-8, so the regression is what transfers *how*
confident the victim was.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

EPS = 1e-6
CONF_CLIP = 30.0


def max_prob_logit(logits: torch.Tensor) -> torch.Tensor:
    """``log p_max - log(1 - p_max)`` per row, stable for confident rows."""
    logp = F.log_softmax(logits, dim=1)
    top = logp.max(dim=1)
    rest = logp.scatter(1, top.indices[:, None], float("-inf"))
    return top.values - torch.logsumexp(rest, dim=1)


def neg_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``-H(softmax(logits))`` in nats."""
    logp = F.log_softmax(logits, dim=1)
    return (logp.exp() * logp).sum(dim=1)


CONFIDENCE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "max_prob": max_prob_logit,
    "entropy": neg_entropy,
}


def threshold_logit(policy: str, tau: float) -> float:
    """The threshold in the loss's confidence space (see the module docstring)."""
    if policy == "max_prob":
        t = min(max(float(tau), EPS), 1.0 - EPS)
        return math.log(t) - math.log1p(-t)
    if policy == "entropy":
        return -float(tau)
    raise ValueError(f"strategy loss: unknown policy {policy!r}; choose one of {sorted(CONFIDENCE)}")


def exit_targets(estimated: torch.Tensor, num_exits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, K-1) binary targets ``[e == k]`` and the mask ``k <= e`` of defined pairs."""
    k = torch.arange(num_exits - 1, device=estimated.device)[None, :]
    e = estimated[:, None]
    return (e == k).float(), (k <= e).float()


def victim_confidence(policy: str, probs: np.ndarray) -> np.ndarray:
    """The victim's confidence ``g(p)`` per returned probability row (float64)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-300, 1.0)
    if policy == "max_prob":
        arg = p.argmax(axis=1)
        top = p[np.arange(len(p)), arg]
        others = p.copy()
        others[np.arange(len(p)), arg] = 0.0
        rest = np.clip(others.sum(axis=1), 1e-300, None)
        return np.log(top) - np.log(rest)
    if policy == "entropy":
        return (p * np.log(p)).sum(axis=1)
    raise ValueError(f"strategy loss: unknown policy {policy!r}; choose one of {sorted(CONFIDENCE)}")


def strategy_loss(policy: str, thresholds: Sequence[float], temperature: float = 1.0,
                  confidence_weight: float = 1.0) -> Callable[..., torch.Tensor]:
    """``loss(exit_logits, estimated_exits, victim_conf)`` (see the module docstring).

    ``victim_conf`` holds ``g(p_victim)`` per sample, NaN where unknown.
    """
    if policy not in CONFIDENCE:
        raise ValueError(f"strategy loss: unknown policy {policy!r}; choose one of "
                         f"{sorted(CONFIDENCE)}")
    if not temperature > 0:
        raise ValueError(f"strategy loss: temperature must be > 0, got {temperature!r}")
    confidence = CONFIDENCE[policy]
    shift = torch.tensor([threshold_logit(policy, t) for t in thresholds], dtype=torch.float32)

    def loss(exit_logits: list[torch.Tensor], estimated: torch.Tensor,
             victim_conf: torch.Tensor | None = None) -> torch.Tensor:
        num_exits = len(exit_logits)
        if len(shift) != num_exits - 1:
            raise ValueError(f"strategy loss: {len(shift)} thresholds for {num_exits} exits")
        conf = torch.stack([confidence(z) for z in exit_logits], dim=1)
        est = estimated.long()
        target, mask = exit_targets(est, num_exits)
        z = (conf[:, :-1] - shift.to(conf.device)) / temperature
        per_pair = F.binary_cross_entropy_with_logits(z, target, reduction="none")
        total = (per_pair * mask).sum() / mask.sum().clamp_min(1.0)
        if victim_conf is not None and confidence_weight > 0:
            known = torch.isfinite(victim_conf)
            if known.any():
                at_e = conf.gather(1, est[:, None].clamp(0, num_exits - 1))[:, 0]
                goal = victim_conf.clamp(-CONF_CLIP, CONF_CLIP)
                total = total + confidence_weight * F.smooth_l1_loss(at_e[known], goal[known])
        return total

    return loss
