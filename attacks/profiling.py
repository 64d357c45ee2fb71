"""Per-exit latency templates learned on an own server, and Bayes classification with them.

The profiling attacker (:mod:`attacks.exit_steal_profiled`) forces each exit of its own
network on its own inputs behind the public deployment (the defense with a key of its
own, the same timing) and records what it observes, combined over repeats as its victim
queries are. :func:`fit_templates` turns those labelled observations into one class
conditional per exit on log latency: a Gaussian KDE (no shape assumed; discretised
latencies stay spikes, uniform delays stay flat) whenever every exit has at least
:data:`KDE_MIN_SAMPLES` profiled latencies; with fewer, the KDE or one normal per exit,
whichever gives the profile the higher held-out log-likelihood under 5-fold
cross-validation (the attacker's own labelled data, never the victim's). Choosing by
cross-validation at any size picked the normal under ``timeguard`` (uniform keyed delays)
on one seed of three, and the EM then emptied an exit: estimation 0.34 against a capacity
of 0.63.
:func:`em_priors` then fits the exit shares of the victim's queries by EM with the
templates fixed, and each query gets its posterior's arg-max: the Bayes rule under the
fitted shares, which is what the capacity figure measures (:mod:`harness.metrics.capacity`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from harness.metrics.leakage import log_density, log_latency, normal_log_density

MODELS = ("kde", "normal")
FOLDS = 5
KDE_MIN_SAMPLES = 50
"""With at least this many profiled latencies per exit the KDE is used (no shape assumed)."""
MISSING_LOG_DENSITY = -1e6
"""Log density of an exit the profile holds no latency of (never its arg-max)."""


def _model_density(model: str, train: np.ndarray, points: np.ndarray, floor_h: float
                   ) -> np.ndarray:
    if len(train) == 0:
        return np.full(len(points), MISSING_LOG_DENSITY)
    density = log_density if model == "kde" else normal_log_density
    return density(train, points, floor_h)


@dataclass(frozen=True)
class ExitTemplates:
    """Profiled log latencies per exit and the class-conditional model chosen for them."""

    samples: tuple[np.ndarray, ...]
    model: str
    floor_h: float
    cv_accuracy: float

    @property
    def num_exits(self) -> int:
        return len(self.samples)

    def log_density(self, latency_s: np.ndarray) -> np.ndarray:
        """``(n, num_exits)`` log densities of ``latency_s`` under each exit's template."""
        y = log_latency(latency_s)
        return np.stack([_model_density(self.model, s, y, self.floor_h) for s in self.samples],
                        axis=1)


def _cross_validate(y: np.ndarray, exits: np.ndarray, num_exits: int, model: str,
                    floor_h: float, fold: np.ndarray) -> tuple[float, float]:
    """(mean held-out log-likelihood of each point under its own exit's template, held-out
    accuracy of the uniform-prior template classifier) on the profile."""
    loglik, correct = 0.0, 0
    for f in range(FOLDS):
        train, test = fold != f, fold == f
        scores = np.stack([_model_density(model, y[train & (exits == k)], y[test], floor_h)
                           for k in range(num_exits)], axis=1)
        own = scores[np.arange(int(test.sum())), exits[test]]
        loglik += float(np.sum(np.maximum(own, MISSING_LOG_DENSITY)))
        correct += int(np.sum(scores.argmax(axis=1) == exits[test]))
    return loglik / max(len(y), 1), correct / max(len(y), 1)


def fit_templates(latency_s: np.ndarray, exits: np.ndarray, num_exits: int,
                  rng: np.random.Generator) -> ExitTemplates:
    """Templates from a profile: finite ``latency_s`` with the exit each was forced to."""
    latency_s = np.asarray(latency_s, dtype=np.float64)
    exits = np.asarray(exits, dtype=np.int64)
    ok = np.isfinite(latency_s) & (latency_s > 0)
    y, exits = log_latency(latency_s[ok]), exits[ok]
    floor_h = max(1e-3 * float(np.ptp(y)) if len(y) else 0.0, 1e-9)
    samples = tuple(np.sort(y[exits == k]) for k in range(num_exits))
    if len(y) < 2 * FOLDS:
        return ExitTemplates(samples, "kde", floor_h, float("nan"))
    fold = rng.permutation(len(y)) % FOLDS
    if min(len(s) for s in samples) >= KDE_MIN_SAMPLES:
        scored = {"kde": _cross_validate(y, exits, num_exits, "kde", floor_h, fold)}
    else:
        scored = {m: _cross_validate(y, exits, num_exits, m, floor_h, fold) for m in MODELS}
    model = max(scored, key=lambda m: (scored[m][0], m == "kde"))
    return ExitTemplates(samples, model, floor_h, scored[model][1])


def em_priors(log_density: np.ndarray, steps: int = 500, tol: float = 1e-10
              ) -> tuple[np.ndarray, np.ndarray]:
    """(exit shares, posterior) of the observations by EM with the templates fixed.

    Starts from equal shares; a share may go to zero (an unused exit). Converges
    monotonically in likelihood; stops when no share moves by more than ``tol``.
    """
    n, k = log_density.shape
    priors = np.full(k, 1.0 / k)
    if n == 0:
        return priors, np.zeros((0, k))
    for _ in range(steps):
        joint = log_density + np.log(np.maximum(priors, 1e-300))
        post = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
        updated = post.mean(axis=0)
        done = float(np.max(np.abs(updated - priors))) <= tol
        priors = updated
        if done:
            break
    joint = log_density + np.log(np.maximum(priors, 1e-300))
    post = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    return priors, post


def boundaries_of(latency_s: np.ndarray, exits: np.ndarray, num_exits: int) -> np.ndarray:
    """Ascending latency boundaries summarising a (possibly non-monotone) assignment: the
    ``e``-th is the smallest latency given an exit above ``e`` (the largest float if none)."""
    lat = np.asarray(latency_s, dtype=np.float64)
    out = np.empty(max(num_exits - 1, 0))
    for e in range(num_exits - 1):
        above = lat[exits > e]
        out[e] = float(above.min()) if len(above) else float(np.finfo(np.float64).max)
    return np.maximum.accumulate(out) if len(out) else out
