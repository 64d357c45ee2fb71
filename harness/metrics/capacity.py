"""What the timing channel carries for the attack's own observations: the capacity figure.

``channel_capacity`` is the Bayes exit accuracy of the best timing-only classifier of
the exit the theft needs (the exit the victim's strategy *intended* for each input, not
the one a defense served) given everything the attacker observed of each input: all of
its admitted repeats. Per input, the classifier is ``argmax_k log P(k) + sum_r log p(log
latency_r | k)``, fitted on the other inputs by ``folds``-fold cross-validation over
inputs (fixed shuffle), with two kinds of class conditionals: Gaussian KDEs (as in
:func:`harness.metrics.leakage.bayes_exit_accuracy`; no shape assumed, but a rare exit's
few samples get a wide kernel) and one normal per exit on log latency (what a mixture
estimator exploits; wrong under added uniform delay). The figure is the better of the
two held-out accuracies (both cross-validated, so choosing costs little optimism), floored
at the majority exit rate. It is reported with a 95% Wilson interval over the inputs.

A cross-validated density classifier is pessimistic on small samples (a rare exit with
two queries may be missing from a training fold). Under the modelled timings the cell
therefore also draws fresh latencies of the same inputs through its own server (its
defense, reset, and its timing, on streams of their own) and scores the classifier
fitted on those draws on the attack's observations (:func:`monte_carlo_capacity`); the
figure is the better of the two. Either classifier is one classifier, so in expectation
neither exceeds the Bayes accuracy, and a defense that treated the draws differently
could only lower the Monte Carlo figure, never the cross-validated one. Under ``live``
timing only the cross-validated estimate exists. The product over repeats treats them as
independent given the exit, which a defense whose noise is a function of the input
(``timeguard``) breaks; the figure then overstates what averaging repeats gives.
``estimation_per_input`` is the attack's side of the comparison: per input, its most
common estimate against the intended exit, so that ``slack = capacity - estimation``
compares like with like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.metrics.leakage import (
    FOLD_SEED,
    log_density,
    log_latency,
    majority_exit_rate,
    normal_log_density,
)

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Capacity:
    """The capacity estimate over ``inputs`` distinct admitted inputs, its 95% interval."""

    estimate: float
    ci95: tuple[float, float]
    inputs: int
    method: str = "cv-kde per input, all admitted repeats, intended exits"

    def to_json(self) -> dict[str, object]:
        return {"estimate": self.estimate, "ci95": list(self.ci95), "inputs": self.inputs,
                "method": self.method}


def wilson(successes: float, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + Z95 ** 2 / n
    centre = (p + Z95 ** 2 / (2 * n)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / denom
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # rounding


def input_groups(x: np.ndarray) -> np.ndarray:
    """An id per row of ``x``, equal for identical inputs (repeats of one query)."""
    flat = np.ascontiguousarray(np.asarray(x).reshape(len(x), -1))
    return np.unique(flat, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)


def channel_capacity(latency_s: np.ndarray, intended: np.ndarray, groups: np.ndarray,
                     folds: int = 5) -> Capacity:
    """The capacity figure (module docstring); NaN latencies (refused) are left out."""
    latency_s, intended = np.asarray(latency_s, dtype=np.float64), np.asarray(intended)
    groups = np.asarray(groups)
    ok = np.isfinite(latency_s)
    y, exits, ids = log_latency(latency_s[ok]), intended[ok], groups[ok]
    inputs, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    n = len(inputs)
    if n == 0:
        return Capacity(0.0, (0.0, 1.0), 0)
    label = exits[first]  # one intended exit per input
    chance = majority_exit_rate(label)
    if n < 2 * folds or len(np.unique(label)) < 2 or y.max() == y.min():
        return Capacity(chance, wilson(chance * n, n), n)
    floor_h = max(1e-3 * float(y.max() - y.min()), 1e-9)
    fold_of_input = np.random.default_rng(FOLD_SEED).permutation(n) % folds
    correct = max(_cv_correct(y, exits, label, inverse, fold_of_input, folds, density)
                  for density in _densities(floor_h))
    estimate = max(correct / n, chance)
    return Capacity(estimate, wilson(estimate * n, n), n)


def _densities(floor_h: float) -> tuple[Any, Any]:
    """The two class-conditional models, ``density(train, points) -> log density``."""
    return (lambda train, points: log_density(train, points, floor_h),
            lambda train, points: normal_log_density(train, points, floor_h))


def _cv_correct(y: np.ndarray, exits: np.ndarray, label: np.ndarray, inverse: np.ndarray,
                fold_of_input: np.ndarray, folds: int, density) -> int:
    """Held-out inputs classified right by ``argmax log prior + sum of log densities``."""
    fold = fold_of_input[inverse]
    correct = 0
    for f in range(folds):
        train_rows, test_rows = fold != f, fold == f
        train_inputs = fold_of_input != f
        classes = np.unique(label[train_inputs])
        held = np.flatnonzero(fold_of_input == f)
        scores = np.zeros((len(classes), len(held)))
        row_input = np.searchsorted(held, inverse[test_rows])
        for i, k in enumerate(classes):
            prior = math.log(np.mean(label[train_inputs] == k))
            per_row = density(y[train_rows & (exits == k)], y[test_rows])
            scores[i] = prior + np.bincount(row_input, weights=per_row, minlength=len(held))
        correct += int(np.sum(classes[np.argmax(scores, axis=0)] == label[held]))
    return correct


def monte_carlo_capacity(latency_s: np.ndarray, intended: np.ndarray, groups: np.ndarray,
                         mc_latency_s: np.ndarray, mc_intended: np.ndarray) -> Capacity | None:
    """The accuracy on the attack's own observations of the classifier fitted on a large
    sample of fresh draws of the same channel (``mc_*``: the cell's server answering the
    same inputs again, its defense and timing): the class conditionals are then fitted on
    many more rows than the attack made, even for a rare exit, and never on the rows they
    classify. None when the sample misses an exit the attack's inputs were meant for.
    The better of the KDE and the normal model, like :func:`channel_capacity`."""
    latency_s, intended = np.asarray(latency_s, dtype=np.float64), np.asarray(intended)
    mc_latency_s = np.asarray(mc_latency_s, dtype=np.float64)
    mc_ok = np.isfinite(mc_latency_s)
    mc_y, mc_exits = log_latency(mc_latency_s[mc_ok]), np.asarray(mc_intended)[mc_ok]
    ok = np.isfinite(latency_s)
    y, exits, ids = log_latency(latency_s[ok]), intended[ok], np.asarray(groups)[ok]
    inputs, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    label = exits[first]
    classes = np.unique(label)
    if len(inputs) == 0 or any(not np.any(mc_exits == k) for k in classes):
        return None
    spread = float(np.ptp(np.concatenate([mc_y, y]))) if len(mc_y) else 0.0
    floor_h = max(1e-3 * spread, 1e-9)
    best = 0
    for density in _densities(floor_h):
        scores = np.stack([math.log(np.mean(label == k))
                           + np.bincount(inverse, weights=density(mc_y[mc_exits == k], y),
                                         minlength=len(inputs)) for k in classes])
        best = max(best, int(np.sum(classes[np.argmax(scores, axis=0)] == label)))
    n = len(inputs)
    estimate = max(best / n, majority_exit_rate(label))
    return Capacity(estimate, wilson(estimate * n, n), n,
                    "classifier fitted on fresh draws through the cell's server, scored on "
                    "the attack's own admitted repeats per input, intended exits")


def estimation_per_input(estimated: np.ndarray, intended: np.ndarray, groups: np.ndarray,
                         admitted: np.ndarray) -> float | None:
    """Per admitted input, whether the attack's most common estimate is the intended exit."""
    estimated, intended = np.asarray(estimated), np.asarray(intended)
    groups, admitted = np.asarray(groups), np.asarray(admitted, dtype=bool)
    if not admitted.any():
        return None
    hits = []
    for g in np.unique(groups[admitted]):
        rows = admitted & (groups == g)
        values, counts = np.unique(estimated[rows], return_counts=True)
        hits.append(values[np.argmax(counts)] == intended[rows][0])
    return float(np.mean(hits))
