"""The ASGI app of ``harness serve``: ``GET /health`` and ``POST /query`` over a victim.

Built on Starlette (served by uvicorn). Every query goes through the client's own
:class:`~harness.serving.oracle.Oracle`, so validation, the budget and the defense
stages are exactly those of the in-process harness. Errors are JSON
``{"error": MESSAGE, "status": CODE}``: 400 bad input (what was wrong and what is
allowed), 401 a missing or unknown API key (servers with ``--api-keys``), 404/405 unknown
route, 408 a body that does not arrive in time, 413 too large, 415 a missing or unknown
encoding, 429 rate limit, budget or client limit, 500 a server-side failure (logged on
the server; a response never carries a stack trace). A refused request is never charged.

One query is computed at a time, on the event loop's own thread (a single-worker server:
live timing stays clean, the budget is charged in order, and no request pays a hop to a
worker thread and back). With ``pace`` on, the response is held for the
latency the endpoint served (the modelled latency after the computation in modelled
timings; in live timing only what the defense's shaping adds beyond the measured
time), so the round trip a client measures carries the timing side channel as a
real server's would.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from harness.errors import BudgetExhaustedError, ConfigError, QueryError
from harness.serving.endpoint import hold_until
from harness.serving.http.clients import ApiKeys, Client, ClientTable
from harness.serving.http.wire import (
    CLIENT_HEADER,
    FORMATS,
    JSON,
    PROTOCOL,
    WireError,
    answer_json,
    check_client_id,
    decode_query,
)
from harness.serving.oracle import Oracle

LOG = logging.getLogger("harness.serve")


@dataclass(frozen=True)
class Health:
    """What ``GET /health`` tells anyone: the task's public face, never exits or thresholds."""

    victim: str
    input_shape: tuple[int, ...]
    num_classes: int
    input_range: tuple[float, float]
    output: str
    budget: int


@dataclass(frozen=True)
class ServeLimits:
    """Request size, rate and time limits of a server (per client where it says so).

    ``idle_client_s``: a client idle that long is forgotten when the client table is full;
    ``new_client_rate``/``new_client_burst``: new client ids per second; ``header_timeout_s``:
    the most a request's line and headers may take (:mod:`.deadlines`); ``body_timeout_s``:
    the most reading its body may take (408 after).
    """

    max_body_bytes: int = 16 * 2**20
    max_json_bytes: int = 2**20
    max_batch: int = 4096
    rate: float = 2000.0
    burst: float = 500.0
    max_clients: int = 256
    idle_client_s: float = 600.0
    new_client_rate: float = 5.0
    new_client_burst: float = 50.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"serve: {key.replace('_', '-')} must be a positive number, "
                                  f"got {value!r}")
        if self.burst < 1:
            raise ConfigError(f"serve: burst must be at least 1 request, got {self.burst!r}")


@dataclass(frozen=True)
class ServeTarget:
    """What the app serves: its health record, a fresh oracle per client, the timing kind."""

    health: Health
    new_oracle: Callable[[str], Oracle]
    measures: bool = False
    pace: bool = True


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status,
                        headers=headers or None)


class QueryService:
    """Answers queries: reads bounded bodies, decodes, charges the client's oracle, paces."""

    def __init__(self, target: ServeTarget, limits: ServeLimits,
                 api_keys: ApiKeys | None = None) -> None:
        self.target = target
        self.limits = limits
        self.api_keys = api_keys
        self.clients = ClientTable(target.new_oracle, rate=limits.rate, burst=limits.burst,
                                   max_clients=limits.max_clients, idle_s=limits.idle_client_s,
                                   new_rate=limits.new_client_rate,
                                   new_burst=limits.new_client_burst)

    def client_id(self, request: Request) -> str:
        """The request's client: its API key's name when the server has keys, else its
        ``X-Client-Id``."""
        if self.api_keys is not None:
            return self.api_keys.client_for(request.headers.get("authorization"))
        return check_client_id(request.headers.get(CLIENT_HEADER))

    async def read_body(self, request: Request) -> bytes:
        limit = self.limits.max_body_bytes
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media == JSON:
            limit = min(limit, self.limits.max_json_bytes)
        hint = (f"; JSON is for small requests (at most {limit:,} bytes): send larger batches "
                "as application/octet-stream" if media == JSON else
                "; split the batch into several requests")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise WireError(413, f"request body of {int(declared):,} bytes exceeds the limit of "
                                 f"{limit:,}{hint}")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise WireError(413, f"request body exceeds the limit of {limit:,} "
                                             f"bytes{hint}")
                    chunks.append(chunk)
        except TimeoutError:
            raise WireError(408, f"the request body took longer than "
                                 f"{self.limits.body_timeout_s:g} s to arrive; send it at "
                                 "once") from None
        return b"".join(chunks)

    def answer(self, client: Client, x: np.ndarray) -> dict[str, Any]:
        """Charge and answer one batch, holding it for its served latency (one at a time:
        it runs on the event loop's thread, so no two answers overlap)."""
        if x.ndim >= 1 and len(x) > self.limits.max_batch:
            raise WireError(413, f"batch of {len(x)} inputs exceeds the limit of "
                                 f"{self.limits.max_batch} per request; split it")
        start = time.perf_counter()
        try:
            result = client.oracle.query(x)
        except BudgetExhaustedError as exc:
            raise WireError(429, str(exc)) from None
        except QueryError as exc:
            raise WireError(400, str(exc)) from None
        done = time.perf_counter()
        if self.target.pace:
            served = float(np.nansum(result.latency_s))
            hold_until((start if self.target.measures else done) + served)
        oracle = client.oracle
        return answer_json(result.outputs, result.admitted, done - start, oracle.queries_used,
                           oracle.budget_left)

    async def query(self, request: Request) -> JSONResponse:
        try:
            client = self.clients.admit(self.client_id(request))
            x = decode_query(await self.read_body(request), dict(request.headers))
            return JSONResponse(self.answer(client, x))
        except WireError as exc:
            headers = {"Retry-After": "1"} if exc.status == 429 else {}
            return _error(exc.status, exc.message, **headers)

    async def health(self, request: Request) -> JSONResponse:
        """The public task description; with ``X-Client-Id``, that client's usage too."""
        body = {"status": "ok", **asdict(self.target.health), "protocol": PROTOCOL,
                "formats": list(FORMATS), "limits": asdict(self.limits)}
        try:
            raw = (self.client_id(request) if self.api_keys is not None
                   else request.headers.get(CLIENT_HEADER))
        except WireError:
            raw = None
        oracle = self.clients.oracle(raw) if raw is not None else None
        body["queries_used"] = oracle.queries_used if oracle is not None else 0
        return JSONResponse(body)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error(404, f"no such endpoint {request.url.path!r}; this server has GET /health "
                           "and POST /query")
    if exc.status_code == 405:
        return _error(405, f"{request.method} is not allowed on {request.url.path}; use GET "
                           "/health and POST /query")
    return _error(exc.status_code, str(exc.detail))


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    LOG.error("query failed on the server: %s: %s", type(exc).__name__, exc)
    return _error(500, "the server failed to answer this request (the failure is logged on the "
                       "server); nothing was charged")


def make_app(target: ServeTarget, limits: ServeLimits | None = None,
             api_keys: ApiKeys | None = None) -> Starlette:
    """The Starlette app serving ``target`` (``app.state.service`` holds the clients);
    with ``api_keys``, every query needs one (:class:`ApiKeys`)."""
    service = QueryService(target, limits or ServeLimits(), api_keys)
    app = Starlette(routes=[Route("/health", service.health, methods=["GET"]),
                            Route("/query", service.query, methods=["POST"])],
                    exception_handlers={HTTPException: _http_error, Exception: _server_error})
    app.state.service = service
    return app
