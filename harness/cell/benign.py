"""Benign clients in the attack's stream, so a defense cannot tell when its cost is measured.

The test split is sent as benign traffic through the *same* defended endpoint (the same
defense instance) that answers the attacker, in chunks of random size from a few
clients with random ids, interleaved with the attacker's batches in proportion to the
budget it has used. The attacker's id is random too. A defense can tell clients apart
only by their behaviour: not by their ids, not by the order of phases, and (with
``HARNESS_SECRET`` set, which salts the split) not by recognising the test split.

Each kind of client has its own timing stream (attacker: ``ATTACK_TIMING``, benign:
``BENIGN_TIMING``), and the undefended reference answers the same chunks in the same
order with ``BENIGN_TIMING``: so with no defense the benign costs are exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from harness.serving.endpoint import RESPONSE_FIELDS, EndpointResponse

BENIGN_CLIENTS = 4
MAX_CHUNK = 16
Respond = Callable[[np.ndarray, str], EndpointResponse]
"""``respond(x, client_id)`` of an endpoint, bound to one timing stream."""


def _client_id(rng: np.random.Generator) -> str:
    return "client-" + "".join(f"{b:02x}" for b in rng.integers(0, 256, size=4))


@dataclass(frozen=True)
class BenignPlan:
    """Which test inputs go in which chunk, from which benign client; the attacker's id."""

    chunks: tuple[np.ndarray, ...]
    client_ids: tuple[str, ...]
    attacker_id: str

    @classmethod
    def draw(cls, n: int, rng: np.random.Generator, clients: int = BENIGN_CLIENTS,
             max_chunk: int = MAX_CHUNK) -> BenignPlan:
        ids = [_client_id(rng) for _ in range(clients + 1)]
        order = rng.permutation(n)
        sizes, total = [], 0
        while total < n:
            sizes.append(int(min(rng.integers(1, max_chunk + 1), n - total)))
            total += sizes[-1]
        chunks = tuple(np.split(order, np.cumsum(sizes)[:-1])) if n else ()
        owners = tuple(ids[1 + int(rng.integers(clients))] for _ in chunks)
        return cls(chunks, owners, ids[0])


@dataclass
class InterleavedEndpoint:
    """The attacker's endpoint: sends the benign chunks that are due before each batch.

    After the attack, :meth:`finish` sends the rest and returns the benign responses in
    test-split order.
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
    _responses: list[EndpointResponse] = field(default_factory=list)

    @property
    def failure(self) -> object:
        return self.failure_of()

    def report(self) -> dict[str, float]:
        """The defense's counters after everything this stream sent."""
        return self.report_of()

    def _send_until(self, count: int) -> None:
        while self._sent < min(count, len(self.plan.chunks)):
            idx = self.plan.chunks[self._sent]
            self._responses.append(self.benign(self.test_x[idx], self.plan.client_ids[self._sent]))
            self._sent += 1

    def respond(self, x: np.ndarray) -> EndpointResponse:
        halfway = (self._used + len(x) / 2) / max(self.budget, 1)
        self._send_until(int(len(self.plan.chunks) * min(halfway, 1.0)))
        self._used += len(x)
        return self.attack(x, self.plan.attacker_id)

    def finish(self) -> EndpointResponse:
        """Send the remaining benign chunks; all benign responses in test-split order."""
        self._send_until(len(self.plan.chunks))
        return assemble(self.plan, self._responses, len(self.test_x))


def assemble(plan: BenignPlan, responses: list[EndpointResponse], n: int) -> EndpointResponse:
    """Per-chunk responses back in test-split order."""
    if not responses:
        raise ValueError("no benign responses to assemble")
    order = np.concatenate(plan.chunks)
    joined = {f: np.concatenate([getattr(r, f) for r in responses])
              for f in RESPONSE_FIELDS}
    out = {}
    for name, values in joined.items():
        arranged = np.empty((n, *values.shape[1:]), dtype=values.dtype)
        arranged[order] = values
        out[name] = arranged
    return EndpointResponse(**out)


def replay(plan: BenignPlan, respond: Respond, test_x: np.ndarray) -> EndpointResponse:
    """The same chunks, in the same order, through another endpoint (the undefended one)."""
    responses = [respond(test_x[idx], cid)
                 for idx, cid in zip(plan.chunks, plan.client_ids, strict=True)]
    return assemble(plan, responses, len(test_x))
