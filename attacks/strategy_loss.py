"""Strategy loss: make a substitute's exit-wise confidence reproduce estimated exits.

A sample with estimated victim exit ``e`` passed every exit ``k < e`` without firing and
fired at ``e``. For each non-final exit ``k <= e`` this is a binary target
``y_ik = [e_i == k]`` ("exit here or not"); samples with ``e < k`` never reach ``k`` and
carry no target there. The substitute's confidence at exit ``k`` is mapped to a logit

* ``max_prob``: ``g(p) = log p_max - log(1 - p_max)`` (the log-odds of the top class,
  computed stably from the logits), threshold ``tau`` maps to ``log tau - log(1 - tau)``;
* ``entropy``: ``g(p) = -H(p)`` and ``tau`` maps to ``-tau``;
* any registered policy that implements the training space of
  :class:`harness.strategy.ExitPolicy` (``confidence_logit``, ``threshold_logit``);

and the loss is the mean binary cross-entropy over all ``(i, k)`` pairs with a target:

``L_strategy = mean_{(i,k): k <= e_i, k < K-1} BCE(sigmoid((g_k(x_i) - g(tau_k)) / T), y_ik)``

with per-exit shifts ``tau_k`` (the thresholds an output strategy search found on the
substitute so far) and a temperature ``T``. It pushes the confidence at exits ``k < e``
below the exit's threshold and the confidence at ``e`` above it; a hinge would stop
at the margin, the BCE keeps ordering samples, which is what a later threshold search
needs. The final exit always answers, so it has no BCE term. Optional per-sample weights
``w_i`` turn the mean into ``sum w_i BCE / sum w_i`` over the same pairs (the attack's
noisy-exit mode down-weights queries whose estimated exit is probably not the
strategy's).

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

from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F

from harness.errors import ConfigError
from harness.strategy import ExitPolicy

CONF_CLIP = 30.0


def exit_targets(estimated: torch.Tensor, num_exits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, K-1) binary targets ``[e == k]`` and the mask ``k <= e`` of defined pairs."""
    k = torch.arange(num_exits - 1, device=estimated.device)[None, :]
    e = estimated[:, None]
    return (e == k).float(), (k <= e).float()


def strategy_loss(policy: ExitPolicy, thresholds: Sequence[float], temperature: float = 1.0,
                  confidence_weight: float = 1.0) -> Callable[..., torch.Tensor]:
    """``loss(exit_logits, estimated_exits, victim_conf, sample_weight)`` (module docstring).

    ``victim_conf`` holds ``g(p_victim)`` per sample, NaN where unknown; the optional
    ``sample_weight`` (>= 0 per sample) weights each sample's BCE pairs in the mean.
    """
    if not policy.trainable():
        raise ConfigError(policy._not_trainable())
    if not temperature > 0:
        raise ConfigError(f"strategy loss: temperature must be > 0, got {temperature!r}")
    shift = torch.tensor([policy.threshold_logit(t) for t in thresholds], dtype=torch.float32)

    def loss(exit_logits: list[torch.Tensor], estimated: torch.Tensor,
             victim_conf: torch.Tensor | None = None,
             sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        num_exits = len(exit_logits)
        if len(shift) != num_exits - 1:
            raise ValueError(f"strategy loss: {len(shift)} thresholds for {num_exits} exits")
        conf = torch.stack([policy.confidence_logit(z) for z in exit_logits], dim=1)
        est = estimated.long()
        target, mask = exit_targets(est, num_exits)
        z = (conf[:, :-1] - shift.to(conf.device)) / temperature
        per_pair = F.binary_cross_entropy_with_logits(z, target, reduction="none")
        if sample_weight is not None:
            mask = mask * sample_weight[:, None]
        total = (per_pair * mask).sum() / mask.sum().clamp_min(1e-6)
        if victim_conf is not None and confidence_weight > 0:
            known = torch.isfinite(victim_conf)
            if known.any():
                at_e = conf.gather(1, est[:, None].clamp(0, num_exits - 1))[:, 0]
                goal = victim_conf.clamp(-CONF_CLIP, CONF_CLIP)
                total = total + confidence_weight * F.smooth_l1_loss(at_e[known], goal[known])
        return total

    return loss
