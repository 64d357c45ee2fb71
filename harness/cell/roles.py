"""The seams of the cell driver: one server handle, one attacker handle, whatever the isolation.

A cell has three roles (docs/design.md section 4): the evaluator (the driver, :mod:`harness.cell.
driver`), the server (victim + defense) and the attacker. *Where* the server and the
attacker run is a :class:`Roles` implementation's business: in the evaluator's process
(:class:`harness.cell.local.LocalRoles`, ``isolation=none``, for debugging) or in
sandboxed workers (:class:`harness.isolation.roles.IsolatedRoles`, ``isolation=process``).
The driver sees only these Protocols, so each phase is written once.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from harness.cell.attacker import AttackerRequest
from harness.cell.server import Stream
from harness.cell.spec import CellEnvironment, CellSpec, ComponentSpec
from harness.cell.stolen import StolenRecord
from harness.cell.substitute import SandboxedStolen, SubstituteOutputs
from harness.errors import ComponentFailure
from harness.plugins.registry import Registry
from harness.protocol import TrainedVictim
from harness.serving.endpoint import EndpointResponse
from harness.serving.oracle import Oracle

HIDDEN_ATTACK = ComponentSpec("attack", "hidden")
"""What the server is told about the attack: nothing."""


@dataclass(frozen=True)
class ServerRequest:
    """What a server is built from: the cell (its attack hidden), the run environment, the
    device, the evaluator's victim and the salt of the server's random streams."""

    cell: CellSpec
    env: CellEnvironment
    device: str
    victim: TrainedVictim
    salt: tuple[int, ...]


class EndpointHandle(Protocol):
    """One client's endpoint on the server (a fresh defense instance behind it).

    ``failure`` is the defense's failure once a stage misbehaved (kept even if the attack
    caught the error); ``benign=True`` answers on the benign clients' timing stream.
    """

    failure: ComponentFailure | None

    def respond(self, x: np.ndarray, *, client_id: str | None = None,
                benign: bool = False) -> EndpointResponse: ...

    def report(self) -> dict[str, float]: ...


class ServerHandle(Protocol):
    """The cell's server: endpoints per client and phase, the no-early-exit baseline."""

    latency_quantiles: Any
    deployed_strategy: dict[str, Any] | None
    """The defense's declared deployed strategy (:meth:`harness.cell.server.Server.declare`),
    set once the server is ready."""

    def wait_ready(self) -> None:
        """Block until the server is built (it builds while the evaluator works)."""

    def endpoint(self, defense_stream: Stream, timing_stream: Stream, *, client_id: str,
                 defended: bool = True) -> EndpointHandle: ...

    def full_latency(self, x: np.ndarray) -> np.ndarray: ...


class AttackerHandle(Protocol):
    """The cell's attack, started with its :class:`AttackerRequest`."""

    def steal(self, oracle: Oracle, *, label: str, component: str,
              defense_failure: Any) -> StolenRecord:
        """Let the attack query ``oracle`` until it returns; its result as data.

        Raises the defense's failure when ``defense_failure()`` holds one, else a
        :class:`ComponentFailure` naming the attack (``label``, ``component``).
        """
        ...


class Session(Protocol):
    """One cell's roles while it runs; started handles are closed when the session ends."""

    def start_server(self, request: ServerRequest) -> ServerHandle: ...

    def start_attacker(self, request: AttackerRequest) -> AttackerHandle: ...

    def stop_attacker(self) -> None:
        """Stop the attack's side (its result is in); the server keeps serving."""

    def score_sandboxed(self, stolen: SandboxedStolen, x: np.ndarray) -> SubstituteOutputs:
        """Run a substitute built from untrusted code outside the evaluator, on ``x``."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the roles enforced, for the cell's ``diagnostics.isolation``."""
        ...


class Roles(Protocol):
    """Where a cell's server and attacker run."""

    mode: str

    def session(self, cell: CellSpec, registry: Registry,
                env: CellEnvironment) -> AbstractContextManager[Session]: ...
