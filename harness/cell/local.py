"""``isolation=none``: the cell's server and attacker in the evaluator's own process.

A debugging mode of the one driver (:mod:`harness.cell.driver`), never ranked: the
server is the same :class:`~harness.cell.server.Server` a server worker builds (from the
victim's server view), each endpoint answers benign clients on its own benign timing
stream exactly as a worker's does, and the attack's result goes through the same
record-and-rebuild as an isolated attack's (:mod:`harness.cell.stolen`). The server
worker of ``isolation=process`` serves through :class:`LocalServer` too.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from harness.cell.attacker import AttackerRequest, attack_failure, run_attack
from harness.cell.roles import ServerRequest
from harness.cell.server import Server, Stream, role_server
from harness.cell.spec import CellEnvironment, CellSpec
from harness.cell.stolen import StolenModelError, StolenRecord, encode_stolen
from harness.cell.substitute import SandboxedStolen, SubstituteOutputs
from harness.errors import ComponentFailure, HarnessError
from harness.plugins.registry import Registry
from harness.serving.endpoint import Endpoint, EndpointResponse
from harness.serving.oracle import Oracle


class LocalEndpoint:
    """An endpoint of a local server with its own benign timing stream."""

    def __init__(self, endpoint: Endpoint, benign_timing: np.random.Generator) -> None:
        self._endpoint = endpoint
        self._benign_timing = benign_timing
        self.server_compute_s = 0.0

    @property
    def failure(self) -> ComponentFailure | None:
        return self._endpoint.failure

    def respond(self, x: np.ndarray, *, client_id: str | None = None,
                benign: bool = False) -> EndpointResponse:
        start = time.perf_counter()
        try:
            return self._endpoint.respond(
                x, client_id=client_id, timing_rng=self._benign_timing if benign else None)
        finally:
            self.server_compute_s += time.perf_counter() - start

    def report(self) -> dict[str, float]:
        return self._endpoint.report()


class LocalServer:
    """A :class:`Server` behind the server handle's interface."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.latency_quantiles = server.info.latency_quantiles
        self.deployed_strategy = server.deployed

    def wait_ready(self) -> None:
        """Built already."""

    def endpoint(self, defense_stream: Stream, timing_stream: Stream, *, client_id: str,
                 defended: bool = True) -> LocalEndpoint:
        endpoint = self.server.endpoint(defense_stream, timing_stream, client_id=client_id,
                                        defended=defended)
        return LocalEndpoint(endpoint, self.server.rng(Stream.BENIGN_TIMING))

    def full_latency(self, x: np.ndarray) -> np.ndarray:
        return self.server.full_latency(x)


class LocalAttacker:
    """The attack in the evaluator's process, with a scratch folder of its own."""

    def __init__(self, request: AttackerRequest, registry: Registry) -> None:
        self.request = request
        self.registry = registry
        self.scratch = Path(tempfile.mkdtemp(prefix="harness-attack-"))

    def steal(self, oracle: Oracle, *, label: str, component: str,
              defense_failure: Any) -> StolenRecord:
        try:
            return encode_stolen(run_attack(self.request, oracle, self.registry, self.scratch))
        except Exception as exc:  # the user's Ctrl-C (a BaseException) stops the grid
            failure = defense_failure()
            if failure is not None:  # the defense failed while the attack queried
                raise failure from None
            if isinstance(exc, ComponentFailure) and exc.component is not None:
                raise
            raise attack_failure(type(exc).__name__, str(exc), isinstance(exc, HarnessError),
                                 label, component) from exc

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


class LocalSession:
    """The roles of one ``isolation=none`` cell."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.attacker: LocalAttacker | None = None

    def start_server(self, request: ServerRequest) -> LocalServer:
        return LocalServer(role_server(request.cell, self.registry, request.env, request.device,
                                       request.salt, request.victim))

    def start_attacker(self, request: AttackerRequest) -> LocalAttacker:
        self.attacker = LocalAttacker(request, self.registry)
        return self.attacker

    def stop_attacker(self) -> None:
        if self.attacker is not None:
            self.attacker.close()

    def score_sandboxed(self, stolen: SandboxedStolen, x: np.ndarray) -> SubstituteOutputs:
        raise StolenModelError(  # the grid refuses untrusted plugins before any work
            f"isolation=none runs no untrusted code, and this substitute needs plugin "
            f"{', '.join(stolen.owners)}; use isolation=process or trust the plugin")

    def describe(self) -> dict[str, Any]:
        return {"mode": "none"}


class LocalRoles:
    """``isolation=none``: everything in this process (debugging only, never ranked)."""

    mode = "none"

    @contextmanager
    def session(self, cell: CellSpec, registry: Registry,
                env: CellEnvironment) -> Iterator[LocalSession]:
        session = LocalSession(registry)
        try:
            yield session
        finally:
            session.stop_attacker()
