"""Output-perturbation defenses: change the probability vectors a client receives.

Each overrides only ``perturb_outputs`` and returns rows on the probability simplex.
What each promises about the top-1 label (the class of the largest probability, the
first one on ties, as ``argmax`` reads it):

* ``label_only`` and ``rounding`` always keep it.
* ``reverse_sigmoid`` and ``gaussian_noise`` keep it when ``keep_label=True`` (the
  default), by swapping two entries of a row whose top-1 moved (:func:`keep_top1`); with
  ``keep_label=False`` see each class for when it may change.

None of them touches exits or latencies: the latency side channel of an early-exit
network is left exactly as it was (these defenses only blur what the outputs say).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.special import expit, logit

from harness.params import Interval
from harness.stages import Defense, StageBatch


def _one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((len(labels), num_classes))
    out[np.arange(len(labels)), labels] = 1.0
    return out


TIE_BREAK = 1e-9
"""Mass moved onto the true top-1 class when a perturbation ties it with an earlier class."""


def keep_top1(original: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    """``perturbed`` with the top-1 class of ``original`` restored in every row.

    A row whose top-1 moved gets the entries of the original top-1 class and the new one
    swapped (same values, still on the simplex). A row where the original top-1 then
    only ties the largest value of an earlier class (``argmax`` takes the first) gets
    :data:`TIE_BREAK` added to it and is renormalised.
    """
    out = perturbed.copy()
    rows = np.arange(len(out))
    want, got = original.argmax(axis=1), out.argmax(axis=1)
    moved = rows[want != got]
    out[moved, want[moved]], out[moved, got[moved]] = (perturbed[moved, got[moved]],
                                                       perturbed[moved, want[moved]])
    tied = rows[out.argmax(axis=1) != want]
    out[tied, want[tied]] += TIE_BREAK
    out[tied] /= out[tied].sum(axis=1, keepdims=True)
    return out


def project_to_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of every row of ``v`` onto the probability simplex.

    The sort-based algorithm (Held et al. 1974; Duchi et al. 2008): subtract the one
    threshold ``theta`` per row that makes the positive parts sum to 1.
    """
    u = -np.sort(-v, axis=1)
    cumulative = np.cumsum(u, axis=1) - 1.0
    ranks = np.arange(1, v.shape[1] + 1)
    support = (u - cumulative / ranks) > 0
    rho = v.shape[1] - 1 - np.argmax(support[:, ::-1], axis=1)
    theta = cumulative[np.arange(len(v)), rho] / (rho + 1)
    return np.maximum(v - theta[:, None], 0.0)


def _residual_on_top(rounded: np.ndarray, top: np.ndarray) -> np.ndarray:
    """``rounded`` with the ``top`` class of each row replaced by 1 minus the others."""
    rows = np.arange(len(rounded))
    out = rounded.copy()
    out[rows, top] = 0.0
    out[rows, top] = 1.0 - out.sum(axis=1)
    return out


class LabelOnly(Defense):
    """Label only: the one-hot vector of the top-1 class replaces the probabilities."""

    name = "label_only"

    def __init__(self) -> None:
        pass

    def perturb_outputs(self, batch: StageBatch) -> np.ndarray:
        return _one_hot(batch.outputs.argmax(axis=1), batch.server.num_classes)


class Rounding(Defense):
    """Rounding: probabilities rounded to `decimals` places, the residual on the top-1 class.

    Every class but the top-1 is rounded to the nearest multiple of ``10**-decimals``
    and the top-1 class gets ``1 - (their sum)``, so the row sums to 1 and stays on
    that grid. Putting the whole residual on the top-1 (rather than spreading it, as
    largest-remainder rounding would) keeps every other revealed value a plain rounding
    of the truth. Nearest rounding of the others can still, with few decimals and many
    classes, leave the top-1 below another class or negative (e.g. 10 classes,
    ``decimals=1``, top 0.16, one other 0.15, eight at 0.086); such a row has its other
    classes rounded *down* instead, which gives the top-1 at least its true value, so
    the top-1 label is always kept and no entry is negative.
    """

    name = "rounding"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "decimals": [Interval("int", 0, 12)]}

    def __init__(self, decimals: int = 2) -> None:
        self.decimals = decimals

    def perturb_outputs(self, batch: StageBatch) -> np.ndarray:
        probs = np.clip(batch.outputs, 0.0, 1.0)
        top = probs.argmax(axis=1)
        scale = 10.0 ** self.decimals
        out = _residual_on_top(np.round(probs * scale) / scale, top)
        bad = (out.argmax(axis=1) != top) | (out.min(axis=1) < 0)
        if bad.any():
            out[bad] = _residual_on_top(np.floor(probs[bad] * scale) / scale, top[bad])
        return out


class ReverseSigmoid(Defense):
    """Reverse sigmoid (Lee et al. 2019): a deceptive perturbation that misleads distillation.

    Each probability ``y`` becomes ``y - beta * (sigmoid(gamma * logit(y)) - 1/2)``,
    negative values are clipped to 0 and the row is divided by its sum (the paper's
    normaliser ``alpha``). Small probabilities are pushed up and large ones down (for
    ``gamma < 1`` the map even decreases near 0 and 1), so many logits give the same
    answer and the log-probabilities a substitute is trained on no longer follow the
    victim's logits. Defaults are those of ART's implementation (``beta=1``,
    ``gamma=0.1``).

    Top-1: with ``keep_label=False`` the label is kept for every row, whatever the
    number of classes, when the map is strictly increasing on [0, 1]: ``gamma > 1`` and
    ``beta * gamma <= 1``, or ``gamma == 1`` and ``beta < 1`` (at ``gamma == 1`` the
    map is linear, ``(1 - beta) * y + beta / 2``, constant at ``beta == 1``). Outside
    that it is flat or decreasing somewhere and rows can flip; for ``gamma < 1`` it
    sends 0 to ``beta / 2``, so at the defaults a row such as (0.4, 0.3, 0.3, 0, ...,
    0) comes out with a zero class on top. With ``keep_label=True`` (default, as in
    Orekondy et al.'s implementation, ``top1_preserve``) :func:`keep_top1` restores
    the label.
    """

    name = "reverse_sigmoid"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "beta": [Interval("real", 0, None, closed="neither")],
        "gamma": [Interval("real", 0, None, closed="neither")],
        "keep_label": [bool]}

    def __init__(self, beta: float = 1.0, gamma: float = 0.1, keep_label: bool = True) -> None:
        self.beta = beta
        self.gamma = gamma
        self.keep_label = keep_label

    def perturb_outputs(self, batch: StageBatch) -> np.ndarray:
        y = np.clip(batch.outputs, 0.0, 1.0)
        shifted = np.clip(y - self.beta * (expit(self.gamma * logit(y)) - 0.5), 0.0, None)
        out = shifted / shifted.sum(axis=1, keepdims=True)
        return keep_top1(y, out) if self.keep_label else out


class GaussianNoise(Defense):
    """Gaussian noise: N(0, scale^2) added to each probability, projected onto the simplex.

    The noise comes from ``batch.rng``; the Euclidean projection
    (:func:`project_to_simplex`) zeroes the classes the noise pushed far enough down.
    With ``keep_label=True`` (default) a row whose top-1 class moved gets the entries of
    the true top-1 and the new one swapped (:func:`keep_top1`), so the label is kept
    deterministically and at no extra draws (a redraw would change how much noise the
    other rows get and could loop). With ``keep_label=False`` the top-1 changes
    whenever the noise reorders it, which is often once ``scale`` is comparable with
    the margin between the two largest probabilities.
    """

    name = "gaussian_noise"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "scale": [Interval("real", 0, 10)],
        "keep_label": [bool]}

    def __init__(self, scale: float = 0.05, keep_label: bool = True) -> None:
        self.scale = scale
        self.keep_label = keep_label

    def perturb_outputs(self, batch: StageBatch) -> np.ndarray:
        y = np.asarray(batch.outputs, dtype=np.float64)
        out = project_to_simplex(y + batch.rng.normal(0.0, self.scale, y.shape))
        return keep_top1(y, out) if self.keep_label else out
