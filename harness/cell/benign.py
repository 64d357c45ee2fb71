"""Benign clients in the attack's stream, so a defense cannot tell when its cost is measured.

The test split is sent as benign traffic through the *same* defended endpoint (the same
defense instance) that answers the attacker, in chunks of random size from a few
clients with random ids, interleaved with the attacker's batches in proportion to the
budget it has used. The attacker's id is random too. One more benign client, the
**mirror**, copies the attacker's traffic shape: for each attacker batch it sends a batch
of the same size (test inputs, cycling through a permutation of the split), just before
or just after it at random; so it has the attacker's batch sizes, volume and
interleaving. A defense can tell clients apart only by their inputs: not by their ids,
not by the order of phases, not by the shape of their traffic (a defense that refuses
attacker-shaped clients refuses the mirror too, and pays in the benign costs), and (with
``HARNESS_SECRET`` set, which salts the split) not by recognising the test split.

Each kind of client has its own timing stream (attacker: ``ATTACK_TIMING``, benign:
``BENIGN_TIMING``), and the undefended reference answers the same chunks in the same
order with ``BENIGN_TIMING``: so with no defense the benign costs are exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from harness.serving.endpoint import RESPONSE_FIELDS, EndpointResponse, random_client_id

BENIGN_CLIENTS = 4
MAX_CHUNK = 16
Respond = Callable[[np.ndarray, str], EndpointResponse]
"""``respond(x, client_id)`` of an endpoint, bound to one timing stream."""


@dataclass(frozen=True)
class BenignPlan:
    """Which test inputs go in which chunk, from which benign client; the attacker's id;
    the mirror client's id, input order and, per attacker batch, whether it goes first."""

    chunks: tuple[np.ndarray, ...]
    client_ids: tuple[str, ...]
    attacker_id: str
    mirror_id: str = "client-mirror"
    mirror_order: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    mirror_first: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=bool))

    @classmethod
    def draw(cls, n: int, rng: np.random.Generator, clients: int = BENIGN_CLIENTS,
             max_chunk: int = MAX_CHUNK, batches: int = 1) -> BenignPlan:
        """A plan for a test split of ``n`` inputs and up to ``batches`` attacker batches."""
        ids = [random_client_id(rng) for _ in range(clients + 2)]
        order = rng.permutation(n)
        sizes, total = [], 0
        while total < n:
            sizes.append(int(min(rng.integers(1, max_chunk + 1), n - total)))
            total += sizes[-1]
        chunks = tuple(np.split(order, np.cumsum(sizes)[:-1])) if n else ()
        owners = tuple(ids[1 + int(rng.integers(clients))] for _ in chunks)
        return cls(chunks, owners, ids[0], ids[-1], rng.permutation(n),
                   rng.random(max(int(batches), 1)) < 0.5)


@dataclass(frozen=True)
class BenignTraffic:
    """Every benign batch in the order sent (test indices, client id), and the answers:
    ``response`` row ``i`` answers test input ``rows[i]``."""

    batches: tuple[tuple[np.ndarray, str], ...]
    response: EndpointResponse

    @property
    def rows(self) -> np.ndarray:
        return (np.concatenate([idx for idx, _ in self.batches]) if self.batches
                else np.zeros(0, dtype=np.int64))


@dataclass
class InterleavedEndpoint:
    """The attacker's endpoint: sends the benign chunks that are due before each batch.

    Before or after each attacker batch (as the plan says) the mirror client sends a
    batch of the same size. After the attack, :meth:`finish` sends the rest of the chunks
    and returns every benign batch with its answers (:class:`BenignTraffic`).
    """

    attack: Respond
    benign: Respond
    plan: BenignPlan
    test_x: np.ndarray
    budget: int
    failure_of: Callable[[], object] = field(default=lambda: None)
    report_of: Callable[[], dict[str, float]] = field(default=dict)
    _sent: int = 0
    _used: int = 0
    _batches: int = 0
    _mirrored: int = 0
    _log: list[tuple[np.ndarray, str]] = field(default_factory=list)
    _responses: list[EndpointResponse] = field(default_factory=list)

    @property
    def failure(self) -> object:
        return self.failure_of()

    def report(self) -> dict[str, float]:
        """The defense's counters after everything this stream sent."""
        return self.report_of()

    def _send(self, idx: np.ndarray, client_id: str) -> None:
        self._log.append((idx, client_id))
        self._responses.append(self.benign(self.test_x[idx], client_id))

    def _send_until(self, count: int) -> None:
        while self._sent < min(count, len(self.plan.chunks)):
            self._send(self.plan.chunks[self._sent], self.plan.client_ids[self._sent])
            self._sent += 1

    def _mirror(self, size: int) -> None:
        """The mirror client's batch of ``size`` test inputs (cycling through its order)."""
        order = self.plan.mirror_order
        if size <= 0 or len(order) == 0:
            return
        idx = order[(self._mirrored + np.arange(size)) % len(order)]
        self._mirrored += size
        self._send(idx, self.plan.mirror_id)

    def respond(self, x: np.ndarray) -> EndpointResponse:
        halfway = (self._used + len(x) / 2) / max(self.budget, 1)
        self._send_until(int(len(self.plan.chunks) * min(halfway, 1.0)))
        first = bool(self.plan.mirror_first[self._batches % len(self.plan.mirror_first)])
        self._batches += 1
        if first:
            self._mirror(len(x))
        answer = self.attack(x, self.plan.attacker_id)
        if not first:
            self._mirror(len(x))
        self._used += len(x)
        return answer

    def finish(self) -> BenignTraffic:
        """Send the remaining benign chunks; every benign batch sent, with its answers."""
        self._send_until(len(self.plan.chunks))
        return BenignTraffic(tuple(self._log), join(self._responses))


def join(responses: list[EndpointResponse]) -> EndpointResponse:
    """Per-batch responses, one after another."""
    if not responses:
        raise ValueError("no benign responses to join")
    return EndpointResponse(**{f: np.concatenate([getattr(r, f) for r in responses])
                               for f in RESPONSE_FIELDS})


def replay(batches: tuple[tuple[np.ndarray, str], ...], respond: Respond,
           test_x: np.ndarray) -> BenignTraffic:
    """The same batches, in the same order, through another endpoint (the undefended one)."""
    return BenignTraffic(batches, join([respond(test_x[idx], cid) for idx, cid in batches]))
