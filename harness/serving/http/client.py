"""``HttpOracle``: the attacker's oracle handle on a server someone else runs (``harness serve``).

It implements what attacks see of :class:`harness.serving.oracle.Oracle` - ``query(x)
-> QueryResult``, ``budget``, ``queries_used``, ``budget_left``, ``output``,
``input_shape``, ``input_range`` - and refuses ``true_exits_for_reference`` (a remote
server never reveals exits). The latency in each :class:`QueryResult` is what the
client measures, as a real remote attacker would:

- ``per_sample=True`` (default, the side-channel setting): every input is its own
  request, and its latency is that request's round trip (``perf_counter`` from just
  before sending to the parsed answer). Batched timing would only give the attacker
  the batch's total, which mixes the exits of all its inputs.
- ``per_sample=False``: the batch is one request and every input gets the round trip
  divided by the batch size (cheap, for function-only attacks; no per-input timing).

``network`` (``none``, ``lan``, ``wan``; see :mod:`harness.timing.network`) adds a
seeded round trip per query on top, to evaluate a remote attacker from loopback.
One keep-alive connection is reused for every request.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from harness.errors import BudgetExhaustedError, HarnessError, InvalidQueryError, QueryError
from harness.protocol import OutputMode, QueryResult
from harness.serving.http.wire import CLIENT_HEADER, PROTOCOL, encode_octet, read_answer
from harness.serving.oracle import BudgetCounter, validate_batch
from harness.timing.network import NetworkProfile, add_network_delay, network_profile


class ServerError(HarnessError):
    """The server could not be reached, or answered something this client cannot read."""


class HttpOracle(BudgetCounter):
    """Budgeted, validated query access to a victim behind ``harness serve``.

    ``seed`` seeds the network jitter; ``budget`` caps this client below the server's
    per-client budget (the server enforces its own either way); ``api_key`` is sent as
    ``Authorization: Bearer`` to a server started with ``--api-keys``.
    """

    def __init__(self, url: str, client_id: str = "attacker", *, per_sample: bool = True,
                 network: str | NetworkProfile = "none", seed: int = 0,
                 budget: int | None = None, timeout_s: float = 60.0,
                 api_key: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ServerError(f"oracle URL {url!r} must look like http://HOST:PORT")
        self.url = url.rstrip("/")
        self.client_id = client_id
        self.per_sample = per_sample
        self.network = network_profile(network) if isinstance(network, str) else network
        self._rng = np.random.default_rng([seed, 0x6E6574])
        self._host, self._port = parts.hostname, parts.port or 80
        self._timeout = timeout_s
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._conn: http.client.HTTPConnection | None = None
        self.health = self._health()
        server_budget = int(self.health["budget"])
        self.budget = server_budget if budget is None else min(int(budget), server_budget)
        """The server's per-client budget, or less when the caller asks for less."""
        self.output: OutputMode = self.health["output"]
        self.input_shape = tuple(int(s) for s in self.health["input_shape"])
        self.input_range = tuple(float(v) for v in self.health["input_range"])
        self.num_classes = int(self.health["num_classes"])
        self._used = int(self.health.get("queries_used", 0))
        """Charged so far to this client id (a reconnecting client resumes its count)."""
        self.server_compute_s: list[float] = []
        """The server's own compute time of each request (diagnostics only)."""

    # -- transport -----------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        return self._conn

    def close(self) -> None:
        """Close the keep-alive connection (a later request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> HttpOracle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        """One request on the kept-alive connection; reconnects once if the server closed it."""
        for attempt in (0, 1):
            reused = self._conn is not None
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers={
                    CLIENT_HEADER: self.client_id, **self._auth, **(headers or {})})
                response = conn.getresponse()
                raw = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if reused and attempt == 0:  # an idle keep-alive connection the server dropped
                    continue
                raise ServerError(f"the server at {self.url} closed the connection") from None
            except OSError as exc:
                self.close()
                raise ServerError(f"cannot reach the server at {self.url} ({exc}); is "
                                  "`harness serve` running there?") from None
            try:
                return response.status, json.loads(raw)
            except ValueError:
                raise ServerError(f"the server at {self.url} answered {method} {path} with "
                                  f"HTTP {response.status} and a body that is not JSON") from None
        raise AssertionError("unreachable")

    def _health(self) -> dict[str, Any]:
        status, doc = self._request("GET", "/health")
        if status != 200 or doc.get("status") != "ok":
            raise ServerError(f"GET {self.url}/health answered HTTP {status}: {doc}")
        if doc.get("protocol") != PROTOCOL:
            raise ServerError(f"the server speaks wire protocol {doc.get('protocol')}, this "
                              f"client {PROTOCOL}; use matching harness versions")
        return doc

    # -- the oracle interface --------------------------------------------------------------
    def _as_batch(self, x: object) -> np.ndarray:
        """The batch, checked as the server will (so a bad batch is refused whole, uncharged)."""
        x = validate_batch(x, self.input_shape, self.input_range)
        self._check_budget(len(x))
        return x

    def _send(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(outputs, admitted, client-measured round trip) of one request."""
        body, headers = encode_octet(x)
        start = time.perf_counter()
        status, doc = self._request("POST", "/query", body, headers)
        elapsed = time.perf_counter() - start
        if status != 200:
            message = doc.get("error", f"HTTP {status}")
            if status == 429 and "budget" in message:
                raise BudgetExhaustedError(message)
            if status in (400, 413, 415):
                raise InvalidQueryError(message)
            if status == 429:
                raise QueryError(message)
            raise ServerError(f"the server answered HTTP {status}: {message}")
        outputs, admitted = read_answer(doc, len(x), self.num_classes, self.output)
        self._used = int(doc["queries_used"])
        self.server_compute_s.append(float(doc["server_compute_s"]))
        return outputs, admitted, elapsed

    def query(self, x: object) -> QueryResult:
        """Answer a batch ``(n, *input_shape)``; the server validates and charges it."""
        xs = self._as_batch(x)
        if not self.per_sample or len(xs) == 1:
            outputs, admitted, elapsed = self._send(xs)
            latency = np.full(len(xs), elapsed / len(xs))
        else:
            parts = [self._send(xs[i:i + 1]) for i in range(len(xs))]
            outputs = np.concatenate([p[0] for p in parts])
            admitted = np.concatenate([p[1] for p in parts])
            latency = np.array([p[2] for p in parts])
        latency = np.where(admitted, latency, np.nan)
        return QueryResult(outputs=outputs, latency_s=add_network_delay(latency, self.network,
                                                                        self._rng),
                           admitted=admitted)

    def true_exits_for_reference(self) -> np.ndarray:
        """Refused: a remote server never reveals the exits that answered."""
        raise QueryError("true exits are not available from a remote server (harness serve "
                         "never sends them); use an estimating attack, not a reference one")
