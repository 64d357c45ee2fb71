"""Exact segment log marginal likelihoods (Normal-Gamma) and dynamic programs over them.

The data are sorted, so a segment is a contiguous run and every statistic a
segment needs (count, sum, sum of squares) is a difference of prefix sums.
:func:`bin_sorted` compresses a long sorted sample into at most ``max_bins`` runs
of about equal count (cuts may then only fall between bins: an approximation
whose error the benchmark measures); with ``n <= max_bins`` every distinct value
is its own bin and everything below is exact.

Model of one segment (Murphy 2007, eq. 95-97): ``x_i ~ N(mu, 1/lambda)``,
``lambda ~ Gamma(alpha0, beta0)``, ``mu | lambda ~ N(mu0, 1/(kappa0 lambda))``; its
marginal likelihood is the product of Student-t predictives, in closed form. With a
*tied* variance (``sigma2`` given: every segment shares it, as exits share one noise
shape in log latency) the marginal is the known-variance one: ``mu ~ N(mu0,
sigma2 / kappa0)``, again in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, logsumexp

LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class NormalGammaPrior:
    """Conjugate prior hyper-parameters on the standardised values."""

    alpha0: float = 1.0
    beta0: float = 0.01
    kappa0: float = 0.01
    mu0: float = 0.0
    sigma2: float | None = None
    """The shared variance of every segment (tied model), or None (each its own)."""


@dataclass(frozen=True)
class Bins:
    """Runs of the sorted data: ``edges`` (B+1 data indices) and prefix sums at them."""

    edges: np.ndarray
    count: np.ndarray
    s1: np.ndarray
    s2: np.ndarray

    @property
    def size(self) -> int:
        return len(self.edges) - 1


def bin_sorted(z: np.ndarray, max_bins: int) -> Bins:
    """At most ``max_bins`` equal-count runs of sorted ``z``, never splitting equal values."""
    n = len(z)
    change = np.flatnonzero(np.diff(z) > 0) + 1
    if len(change) + 1 <= max_bins:
        inner = change
    else:
        target = np.round(np.linspace(0, n, max_bins + 1)[1:-1]).astype(np.int64)
        inner = np.unique(np.searchsorted(z, z[target], side="left"))
        inner = inner[(inner > 0) & (inner < n)]
    edges = np.concatenate([[0], inner, [n]]).astype(np.int64)
    c1 = np.concatenate([[0.0], np.cumsum(z)])
    c2 = np.concatenate([[0.0], np.cumsum(z * z)])
    return Bins(edges, edges.astype(np.float64), c1[edges], c2[edges])


def log_marginal(n: np.ndarray, s1: np.ndarray, s2: np.ndarray,
                 prior: NormalGammaPrior) -> np.ndarray:
    """Log marginal likelihood of segments with ``n >= 1`` points, sums ``s1``, ``s2``."""
    a0, b0, k0, m0 = prior.alpha0, prior.beta0, prior.kappa0, prior.mu0
    mean = s1 / n
    ss = np.maximum(s2 - s1 * mean, 0.0)
    kn = k0 + n
    if prior.sigma2 is not None:
        v = prior.sigma2
        quad = ss + k0 * n * (mean - m0) ** 2 / kn
        return -0.5 * n * (LOG_2PI + np.log(v)) - 0.5 * np.log(kn / k0) - 0.5 * quad / v
    beta_n = b0 + 0.5 * ss + k0 * n * (mean - m0) ** 2 / (2.0 * kn)
    an = a0 + 0.5 * n
    return (gammaln(an) - an * np.log(beta_n) - 0.5 * np.log(kn) - 0.5 * n * LOG_2PI
            + (a0 * np.log(b0) - gammaln(a0) + 0.5 * np.log(k0)))


def segment_scores(bins: Bins, prior: NormalGammaPrior, min_points: int = 1) -> np.ndarray:
    """``L[a, b]`` = log marginal likelihood of bins ``a..b-1`` (``-inf`` unless ``a < b``)."""
    cnt = bins.count[None, :] - bins.count[:, None]
    valid = cnt >= max(1, min_points)
    n = np.where(valid, cnt, 1.0)
    out = log_marginal(n, bins.s1[None, :] - bins.s1[:, None],
                       bins.s2[None, :] - bins.s2[:, None], prior)
    out[~valid] = -np.inf
    return out


def map_segmentations(L: np.ndarray, max_segments: int) -> list[np.ndarray | None]:
    """Best cut edges for every ``k = 1..max_segments`` (``None`` where impossible).

    ``F[k][b]`` = best log score of cutting bins ``0..b-1`` into ``k`` segments;
    ``F[k][b] = max_a F[k-1][a] + L[a, b]``. O(K B^2) time, O(K B) memory.
    """
    B = L.shape[0] - 1
    F = np.full((max_segments + 1, B + 1), -np.inf)
    arg = np.zeros((max_segments + 1, B + 1), dtype=np.int64)
    F[1] = L[0]
    for k in range(2, max_segments + 1):
        cand = F[k - 1][:, None] + L
        arg[k] = np.argmax(cand, axis=0)
        F[k] = cand[arg[k], np.arange(B + 1)]
    out: list[np.ndarray | None] = [None]
    for k in range(1, max_segments + 1):
        if not np.isfinite(F[k][B]):
            out.append(None)
            continue
        cuts, b = [], B
        for j in range(k, 1, -1):
            b = int(arg[j][b])
            cuts.append(b)
        out.append(np.asarray(cuts[::-1], dtype=np.int64))
    return out


def segment_membership(L: np.ndarray, k: int) -> np.ndarray:
    """Posterior ``P(bin t in segment j)`` (B, k) over all cuttings into exactly ``k`` segments.

    Uniform prior over cuttings; forward ``A[j][b]`` and backward ``Bk[j][a]`` sums in log
    space, then for segment ``j`` the probability that it spans bins ``a..b-1`` is summed
    over ``a <= t < b`` with two cumulative sums.
    """
    B = L.shape[0] - 1
    A = np.full((k + 1, B + 1), -np.inf)
    A[0, 0] = 0.0
    for j in range(1, k + 1):
        A[j] = logsumexp(A[j - 1][:, None] + L, axis=0)
    Bk = np.full((k + 1, B + 1), -np.inf)
    Bk[0, B] = 0.0
    for j in range(1, k + 1):
        Bk[j] = logsumexp(L + Bk[j - 1][None, :], axis=1)
    Z = A[k, B]
    post = np.zeros((B, k))
    idx = np.arange(B)
    for j in range(1, k + 1):
        with np.errstate(invalid="ignore"):
            M = np.exp(A[j - 1][:, None] + L + Bk[k - j][None, :] - Z)
        M = np.nan_to_num(M, nan=0.0)
        rows = np.cumsum(M, axis=0)  # sum over starts a <= t
        tail = np.cumsum(rows[:, ::-1], axis=1)[:, ::-1]  # sum over ends b >= col
        post[:, j - 1] = tail[idx, idx + 1]
    post /= np.maximum(post.sum(axis=1, keepdims=True), 1e-300)
    return post
