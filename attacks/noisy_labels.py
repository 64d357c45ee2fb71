"""Posterior weights for estimated exits that a defense made noisy.

A defense such as exit noise answers a query from another exit than its strategy chose,
with probability ``eps``, uniformly over the other ``K - 1`` exits. Latency and output
follow the exit that answered, so the attacker's estimated exit ``e_i`` is that exit:
a *noisy label* of the strategy's exit ``t_i``. The attacker also has a provisional
substitute (trained, thresholds searched) whose exit ``s_i`` is right with some
probability ``a``. Assuming its mistakes are uniform over the other exits and
independent of the defense's noise:

* ``P(s = e | clean) = a`` and ``P(s = e | noisy) = (1 - a) / (K - 1)``, so the observed
  agreement ``A = (1 - eps) a + eps (1 - a) / (K - 1)`` gives
  ``a = (A - eps / (K - 1)) / (1 - eps K / (K - 1))`` (clipped to ``[0, 1]``);
* Bayes' rule then gives the probability that ``e_i`` is clean, one value for queries
  where ``s_i = e_i`` and one where they differ.

These posteriors weight the per-query strategy loss (soft sample selection, as in
noisy-label learning's "small-loss" trick, but with the rate the attacker assumes
rather than a tuned cut). ``eps = 0`` gives weight 1 everywhere.
"""

from __future__ import annotations

import numpy as np


def provisional_accuracy(agreement: float, eps: float, num_exits: int) -> float:
    """The substitute's accuracy ``a`` on the clean exits implied by its observed agreement."""
    if num_exits < 2:
        return 1.0
    other = eps / (num_exits - 1)
    denom = 1.0 - eps - other
    if denom <= 0:
        return 1.0
    return float(np.clip((agreement - other) / denom, 0.0, 1.0))


def _posterior(clean: float, noisy: float) -> float:
    total = clean + noisy
    return clean / total if total > 0 else 1.0


def clean_label_weights(provisional: np.ndarray, estimated: np.ndarray, eps: float,
                        num_exits: int) -> np.ndarray:
    """``P(estimated exit is clean | substitute agrees or not)`` per query (module docstring).

    ``provisional``: the substitute's exit per query; ``estimated``: the attacker's
    estimated (noisy) exit; ``eps``: the assumed noise rate in ``[0, 0.5)``.
    """
    provisional = np.asarray(provisional)
    estimated = np.asarray(estimated)
    if provisional.shape != estimated.shape:
        raise ValueError(f"provisional {provisional.shape} and estimated {estimated.shape} "
                         "exits differ in shape")
    agree = provisional == estimated
    if eps <= 0 or num_exits < 2 or len(agree) == 0:
        return np.ones(len(agree))
    a = provisional_accuracy(float(agree.mean()), eps, num_exits)
    miss = (1.0 - a) / (num_exits - 1)
    w_agree = _posterior((1 - eps) * a, eps * miss)
    w_differ = _posterior((1 - eps) * (1 - a), eps * (1 - miss))
    return np.where(agree, w_agree, w_differ)
