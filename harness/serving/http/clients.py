"""Per-client state of ``harness serve``: one oracle (budget + fresh defense) and a rate limit.

Each client id gets its own :class:`~harness.serving.oracle.Oracle`, built on first
use with the server's budget and a fresh defense endpoint, so budgets and stateful
defenses never mix clients. A token bucket limits each client's request rate. Made-up ids
cannot exhaust the server: the number of clients is capped, a client idle for
``idle_s`` is forgotten when room is needed (so ids never lock newcomers out for the
server's life), and new ids are themselves rate-limited (``new_rate``, ``new_burst``).

A client id is a name, not an identity: a client that rotates ids gets a fresh budget
under each. An operator who needs budgets that hold passes an API-key file
(:class:`ApiKeys`, ``harness serve --api-keys FILE``): every request must then carry
``Authorization: Bearer KEY``, and its client is the key's name, whatever
``X-Client-Id`` says.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ConfigError
from harness.serving.http.wire import CLIENT_ID, WireError
from harness.serving.oracle import Oracle

MIN_KEY_CHARS = 16


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
    """One client's oracle, rate limiter and last request (monotonic seconds)."""

    oracle: Oracle
    bucket: TokenBucket
    seen: float = field(default_factory=time.monotonic)


class ClientTable:
    """Thread-safe map client id -> :class:`Client`, created on first request."""

    def __init__(self, new_oracle: Callable[[str], Oracle], *, rate: float, burst: float,
                 max_clients: int, idle_s: float = 600.0, new_rate: float = 5.0,
                 new_burst: float = 50.0) -> None:
        self._new_oracle = new_oracle
        self._rate = rate
        self._burst = burst
        self._max_clients = max_clients
        self._idle_s = idle_s
        self._new_ids = TokenBucket(new_rate, new_burst)
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()

    def admit(self, client_id: str) -> Client:
        """The client, after charging one request to its rate limit (429 when over)."""
        with self._lock:
            client = self._clients.get(client_id)
            if client is None:
                client = self._create(client_id)
            client.seen = time.monotonic()
            wait = client.bucket.take()
        if wait > 0:
            raise WireError(429, f"rate limit: at most {self._rate:g} requests per second "
                                 f"(bursts of {self._burst:g}) per client; retry in "
                                 f"{wait:.3f} s")
        return client

    def _create(self, client_id: str) -> Client:
        if len(self._clients) >= self._max_clients:
            self._forget_idle()
        if len(self._clients) >= self._max_clients:
            raise WireError(429, f"this server already serves {self._max_clients} clients "
                                 f"active within {self._idle_s:g} s (its limit); reuse your "
                                 "X-Client-Id or retry later")
        wait = self._new_ids.take()
        if wait > 0:
            raise WireError(429, "new client ids are rate-limited on this server; reuse your "
                                 f"X-Client-Id or retry in {wait:.3f} s")
        client = Client(self._new_oracle(client_id), TokenBucket(self._rate, self._burst))
        self._clients[client_id] = client
        return client

    def _forget_idle(self) -> None:
        cutoff = time.monotonic() - self._idle_s
        for name in [n for n, c in self._clients.items() if c.seen < cutoff]:
            del self._clients[name]

    def oracle(self, client_id: str) -> Oracle | None:
        """The server-side oracle of a client (operator diagnostics; never sent to clients)."""
        with self._lock:
            client = self._clients.get(client_id)
        return client.oracle if client else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)


class ApiKeys:
    """Client names by API key, read from a file of ``NAME KEY`` lines (``#`` comments).

    Keys are kept only as SHA-256 digests. A name is an ``X-Client-Id``-style name; a key
    has at least :data:`MIN_KEY_CHARS` characters; names and keys are unique.
    """

    def __init__(self, names_by_digest: dict[str, str]) -> None:
        self._names = dict(names_by_digest)

    @staticmethod
    def _digest(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    @classmethod
    def load(cls, path: Path) -> ApiKeys:
        """Read a key file (ConfigError naming the line on anything malformed)."""
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"serve: --api-keys {path}: cannot read it ({exc})") from None
        names: dict[str, str] = {}
        for number, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.split()
            where = f"serve: --api-keys {path}, line {number}"
            if len(parts) != 2:
                raise ConfigError(f"{where}: expected 'NAME KEY', got {len(parts)} fields")
            name, key = parts
            if not CLIENT_ID.fullmatch(name):
                raise ConfigError(f"{where}: name {name[:40]!r} must be 1-64 letters, digits, "
                                  "'.', '_' or '-'")
            if len(key) < MIN_KEY_CHARS:
                raise ConfigError(f"{where}: the key of {name!r} is shorter than "
                                  f"{MIN_KEY_CHARS} characters; generate a long random one")
            digest = cls._digest(key)
            if digest in names or name in names.values():
                raise ConfigError(f"{where}: name {name!r} or its key appears twice")
            names[digest] = name
        if not names:
            raise ConfigError(f"serve: --api-keys {path} holds no 'NAME KEY' line")
        return cls(names)

    def client_for(self, authorization: str | None) -> str:
        """The client name of a request's ``Authorization: Bearer KEY`` (401 otherwise)."""
        scheme, _, key = (authorization or "").partition(" ")
        name = self._names.get(self._digest(key.strip())) if scheme.lower() == "bearer" else None
        if name is None:
            raise WireError(401, "this server needs an API key: send Authorization: Bearer KEY "
                                 "(a key its operator gave you)")
        return name

    def __len__(self) -> int:
        return len(self._names)
