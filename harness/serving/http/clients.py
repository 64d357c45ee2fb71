"""Per-client state of ``harness serve``: one oracle (budget + fresh defense) and a rate limit.

Each client id gets its own :class:`~harness.serving.oracle.Oracle`, built on first
use with the server's budget and a fresh defense endpoint, so budgets and stateful
defenses never mix clients. A token bucket limits each client's request rate, and
the number of distinct clients is capped so that made-up ids cannot exhaust memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.serving.http.wire import WireError
from harness.serving.oracle import Oracle


@dataclass
class TokenBucket:
    """``rate`` requests per second on average, bursts of up to ``burst`` (monotonic clock)."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0.0 when a request may go now, else the seconds until one may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass
class Client:
    """One client's oracle and rate limiter."""

    oracle: Oracle
    bucket: TokenBucket


class ClientTable:
    """Thread-safe map client id -> :class:`Client`, created on first request."""

    def __init__(self, new_oracle: Callable[[str], Oracle], *, rate: float, burst: float,
                 max_clients: int) -> None:
        self._new_oracle = new_oracle
        self._rate = rate
        self._burst = burst
        self._max_clients = max_clients
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()

    def admit(self, client_id: str) -> Client:
        """The client, after charging one request to its rate limit (429 when over)."""
        with self._lock:
            client = self._clients.get(client_id)
            if client is None:
                if len(self._clients) >= self._max_clients:
                    raise WireError(429, f"this server already serves {self._max_clients} "
                                         "clients (its limit); reuse your X-Client-Id")
                client = Client(self._new_oracle(client_id), TokenBucket(self._rate, self._burst))
                self._clients[client_id] = client
            wait = client.bucket.take()
        if wait > 0:
            raise WireError(429, f"rate limit: at most {self._rate:g} requests per second "
                                 f"(bursts of {self._burst:g}) per client; retry in "
                                 f"{wait:.3f} s")
        return client

    def oracle(self, client_id: str) -> Oracle | None:
        """The server-side oracle of a client (operator diagnostics; never sent to clients)."""
        with self._lock:
            client = self._clients.get(client_id)
        return client.oracle if client else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)
