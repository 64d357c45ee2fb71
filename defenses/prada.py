"""PRADA (Juuti et al., EuroS&P 2019): refuse clients whose query stream looks synthetic.

Natural queries lie at distances from one another that are close to normally
distributed; the synthetic queries of extraction attacks (JBDA-style perturbations of
a few seeds, repeated inputs) do not. For every client PRADA keeps the client's
queries and, for each new one, its minimum L2 distance to that client's earlier
queries (a batch is taken query by query, so earlier queries of the same batch count).
Once a client has ``min_queries`` distances, a Shapiro-Wilk test runs on its distance
set after every ``check_every``-th new distance; when the statistic ``W`` falls below
``delta`` the client is flagged, and that query and every later one of the client is
refused for the rest of the phase.

Differences from the paper, forced by the ``admit`` stage: it runs before the victim
answers, so there is no predicted class to split the distances by (the paper keeps one
"growing set" per class and a distance threshold for joining it); here every query
joins one set per client. A distance set with zero spread (one input sent over and
over) counts as not normal (``W = 0``).

Cost: a client's stored queries and distances are bounded by ``max_history`` (the most
recent ones are kept; 5000 is also where scipy's Shapiro-Wilk stops being exact).
Queries are handled in blocks of :data:`BLOCK`: a block's squared distances to the
stored queries and to one another are one matrix product each (float64), then the
nearest candidate's distance is recomputed exactly, so a repeat is at distance 0 and
not at rounding noise.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from scipy.stats import shapiro

from harness.errors import ConfigError
from harness.params import Interval
from harness.stages import Defense, StageBatch

if TYPE_CHECKING:
    from harness.plugins.registry import Registry

BLOCK = 512
"""Queries whose distances are computed together (bounds the distance matrices)."""


@dataclass
class _Client:
    """One client's recent queries and distances (rings of ``max_history``) and flag."""

    store: np.ndarray
    window: np.ndarray
    seen: int = 0
    measured: int = 0
    flagged: bool = False

    def stored(self) -> np.ndarray:
        return self.store[:min(self.seen, len(self.store))]

    def add(self, rows: np.ndarray, cap: int) -> None:
        """Keep ``rows``, overwriting the oldest once ``cap`` rows are stored."""
        need = min(self.seen + len(rows), cap)
        if need > len(self.store):  # still below cap: nothing has been overwritten yet
            grown = np.empty((min(max(need, 2 * len(self.store)), cap), rows.shape[1]))
            grown[:self.seen] = self.store[:self.seen]
            self.store = grown
        kept = rows[-cap:]
        first = self.seen + len(rows) - len(kept)
        self.store[(first + np.arange(len(kept))) % cap] = kept
        self.seen += len(rows)


def _nearest(x: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """For each row of ``x``, the index of its nearest earlier query: one of ``stored``
    (``0..len(stored)-1``) or an earlier row of ``x`` (``len(stored) + j``); -1 for none."""
    sq = np.einsum("ij,ij->i", x, x)
    within = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    within[np.triu_indices(len(x))] = np.inf
    if len(stored):
        s_sq = np.einsum("ij,ij->i", stored, stored)
        both = np.hstack([sq[:, None] + s_sq[None, :] - 2.0 * (x @ stored.T), within])
    else:
        both = within
    best = both.argmin(axis=1)
    best[~np.isfinite(both[np.arange(len(x)), best])] = -1
    return best


def normality(distances: np.ndarray) -> float:
    """Shapiro-Wilk ``W`` of the distance set (0 when the set has no spread)."""
    values = np.asarray(distances)
    if np.ptp(values) == 0:
        return 0.0
    with warnings.catch_warnings():  # scipy warns that p-values are approximate above 5000
        warnings.simplefilter("ignore")
        return float(shapiro(values).statistic)


class Prada(Defense):
    """PRADA: refuses a client once its nearest-query distances fail a normality test.

    ``delta=0.9``, the low end of the paper's range, keeps natural clients answered: on
    the digits data, 400 benign streams of 68-114 test digits (4 clients x 100 seeds)
    never went below W = 0.909 from 30 distances on, while 9 of them dipped below
    0.92. JBDA-like streams (sign steps from a few seeds) fall to W ~ 0.18 at the first
    test. Uniform noise mostly passes (3 of 20 streams flagged): in 64 dimensions its
    nearest-neighbour distances are themselves close to normal. In a digits cell
    (budget 300), ``exit_steal`` sending each pool digit once is never refused, and
    with ``repeats=3`` it is refused from its 31st query on.
    """

    name = "prada"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "delta": [Interval("real", 0, 1, closed="right")],
        "min_queries": [Interval("int", 3, None)],
        "check_every": [Interval("int", 1, None)],
        "max_history": [Interval("int", 3, None)]}

    def __init__(self, delta: float = 0.9, min_queries: int = 30, check_every: int = 1,
                 max_history: int = 5000) -> None:
        self.delta = delta
        self.min_queries = min_queries
        self.check_every = check_every
        self.max_history = max_history

    def validate(self, registry: Registry | None = None) -> None:
        """Constraints, then ``max_history >= min_queries`` (or the test would never run)."""
        super().validate(registry)
        if self.max_history < self.min_queries:
            raise ConfigError(f"defense {self.name!r}: max_history={self.max_history} must be "
                              f">= min_queries={self.min_queries}, or no test ever runs")

    def reset(self) -> None:
        self._clients: dict[str, _Client] = {}
        self._refused = 0

    def report(self) -> dict[str, float]:
        """Clients seen, clients flagged and queries refused so far in this phase."""
        return {"clients_seen": len(self._clients),
                "flagged_clients": sum(c.flagged for c in self._clients.values()),
                "refused_queries": self._refused}

    def _client(self, client_id: str, dim: int) -> _Client:
        if client_id not in self._clients:
            self._clients[client_id] = _Client(np.empty((0, dim)), np.empty(0))
        return self._clients[client_id]

    def _flags(self, client: _Client, distance: float) -> bool:
        """Record one distance; whether the test now due rejects normality."""
        if client.measured == len(client.window) < self.max_history:
            client.window = np.resize(client.window,
                                      min(max(64, 2 * len(client.window)), self.max_history))
        client.window[client.measured % self.max_history] = distance
        client.measured += 1
        due = (client.measured >= self.min_queries
               and (client.measured - self.min_queries) % self.check_every == 0)
        window = client.window[:min(client.measured, self.max_history)]
        return due and normality(window) < self.delta

    def admit(self, batch: StageBatch) -> np.ndarray:
        x = np.asarray(batch.inputs, dtype=np.float64).reshape(len(batch), -1)
        client = self._client(batch.client_id, x.shape[1])
        admitted = np.zeros(len(x), dtype=bool)
        for start in range(0, len(x), BLOCK):
            if client.flagged:
                break
            block = x[start:start + BLOCK]
            stored = client.stored()
            taken = 0
            for i, j in enumerate(_nearest(block, stored)):
                if j >= 0:
                    other = stored[j] if j < len(stored) else block[j - len(stored)]
                    if self._flags(client, float(np.linalg.norm(block[i] - other))):
                        client.flagged = True
                        break
                taken += 1
            client.add(block[:taken], self.max_history)
            admitted[start:start + taken] = True
        self._refused += int((~admitted).sum())
        return admitted
