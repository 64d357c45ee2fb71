"""Exact cut refinement inside windows: a chain dynamic program over candidate cuts.

Given ``K - 1`` windows of candidate cut positions (data indices), the cuttings whose
``j``-th cut lies in window ``j`` form a chain ``0 < c_1 < ... < c_{K-1} < m`` with
pairwise factors ``exp(S(c_{j-1}, c_j))`` (segment log marginal likelihoods from
prefix sums). Max-product gives their exact MAP; sum-product gives each cut's exact
marginal, and since ``segment(i) >= j`` iff ``c_j <= i``, the membership
``P(segment(i) = j) = P(c_j <= i) - P(c_{j+1} <= i)`` follows exactly (conditional on
the windows). Cost: ``O(sum_j |C_{j-1}| |C_j|)``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from attacks.exit_estimation.normal_gamma import NormalGammaPrior, log_marginal


@dataclass(frozen=True)
class RefinedCuts:
    """MAP cuts (data indices) and, optionally, the (m, K) segment membership."""

    cuts: np.ndarray
    membership: np.ndarray | None


def cut_windows(z: np.ndarray, edges: np.ndarray, cut_bins: np.ndarray,
                width: int) -> list[np.ndarray]:
    """Candidate cuts within ``width`` bins of each coarse cut (only where values change)."""
    m = len(z)
    changes = np.flatnonzero(np.diff(z) > 0) + 1
    out = []
    for e in cut_bins:
        lo = edges[max(int(e) - width, 0)]
        hi = edges[min(int(e) + width, len(edges) - 1)]
        cand = changes[(changes >= max(lo, 1)) & (changes <= min(hi, m - 1))]
        out.append(cand if cand.size else np.asarray([edges[int(e)]]))
    return out


def _chain_scores(z: np.ndarray, sets: list[np.ndarray], prior: NormalGammaPrior,
                  min_points: int) -> list[np.ndarray]:
    c1 = np.concatenate([[0.0], np.cumsum(z)])
    c2 = np.concatenate([[0.0], np.cumsum(z * z)])
    out = []
    for prev, cur in itertools.pairwise(sets):
        a, b = prev[:, None], cur[None, :]
        cnt = (b - a).astype(np.float64)
        valid = cnt >= max(1, min_points)
        n = np.where(valid, cnt, 1.0)
        s = log_marginal(n, c1[b] - c1[a], c2[b] - c2[a], prior)
        out.append(np.where(valid, s, -np.inf))
    return out


def refine_cuts(z: np.ndarray, windows: list[np.ndarray], prior: NormalGammaPrior,
                min_points: int = 1, membership: bool = True) -> RefinedCuts:
    """Exact MAP (and memberships) over cuttings with cut ``j`` in ``windows[j]``."""
    m = len(z)
    sets = [np.asarray([0]), *[np.asarray(w, dtype=np.int64) for w in windows], np.asarray([m])]
    S = _chain_scores(z, sets, prior, min_points)
    fmax, back = [np.zeros(1)], []
    for Sj in S:
        cand = fmax[-1][:, None] + Sj
        back.append(np.argmax(cand, axis=0))
        fmax.append(cand[back[-1], np.arange(cand.shape[1])])
    if not np.isfinite(fmax[-1][0]):
        if min_points > 1:
            return refine_cuts(z, windows, prior, 1, membership)
        raise RuntimeError("refine_cuts: no valid cutting in the candidate windows")
    idx = [0]
    for bj in reversed(back):
        idx.append(int(bj[idx[-1]]))
    chosen = idx[::-1]  # index into each set, from set 0 to set K
    cuts = np.asarray([sets[j][chosen[j]] for j in range(1, len(sets) - 1)], dtype=np.int64)
    if not membership:
        return RefinedCuts(cuts, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        flse = [np.zeros(1)]
        for Sj in S:
            flse.append(logsumexp(flse[-1][:, None] + Sj, axis=0))
        blse = [np.zeros(1)]
        for Sj in reversed(S):
            blse.append(logsumexp(Sj + blse[-1][None, :], axis=1))
        blse = blse[::-1]
    k = len(sets) - 1
    at_least = np.zeros((m, k + 1))  # at_least[i, j] = P(segment(i) >= j)
    at_least[:, 0] = 1.0
    positions = np.arange(m)
    for j in range(1, k):
        logp = flse[j] + blse[j]
        p = np.exp(logp - logsumexp(logp))
        order = np.argsort(sets[j])
        cdf = np.concatenate([[0.0], np.cumsum(p[order])])
        at_least[:, j] = cdf[np.searchsorted(sets[j][order], positions, side="right")]
    member = np.clip(at_least[:, :-1] - at_least[:, 1:], 0.0, 1.0)
    member /= np.maximum(member.sum(axis=1, keepdims=True), 1e-300)
    return RefinedCuts(cuts, member)
