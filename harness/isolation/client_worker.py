"""The client role in its own process: the attack, an oracle client and nothing else.

:func:`client_main` runs in a fresh worker, confined by the kernel
(:mod:`harness.isolation.confine`): it loads the plugins,
builds the attack and hands it an :class:`OracleClient` that speaks the wire protocol to
the evaluator. The evaluator (:class:`harness.isolation.broker.AttackClient`) holds the real
:class:`~harness.serving.oracle.Oracle` (validation, budget, the private log of true
exits) in front of the server worker, so nothing the attack does in its own process
can add queries, unlock true exits or reach the victim. The attack runs through
:func:`harness.cell.attacker.run_attack`, as in every mode, and its result comes back as
data (:mod:`harness.cell.stolen`).

Timing: under ``timing=live`` the latency an attack sees is the round trip its client
measured (one request per input, as a real remote attacker would time it); under the
modelled timings it is the server's reported latency, so results stay reproducible.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.cell.attacker import AttackerRequest, run_attack
from harness.cell.stolen import encode_stolen
from harness.errors import BudgetExhaustedError, HarnessError, InvalidQueryError, QueryError
from harness.isolation.confine import Confinement, ConfinementReport, run_confined
from harness.isolation.sandbox import PluginSetting, use_scratch
from harness.isolation.wire import Message, WireError, receive, send
from harness.plugins.registry import load_registry
from harness.protocol import OracleHandle, OutputMode, QueryResult
from harness.serving.http.client import HttpOracle
from harness.serving.oracle import BudgetCounter
from harness.timing.network import add_network_delay

NETWORK_STREAM = 0x6E6574
"""The client's network-jitter generator is ``default_rng([cell seed, NETWORK_STREAM])``."""

QUERY_ERRORS = {cls.__name__: cls for cls in (BudgetExhaustedError, InvalidQueryError, QueryError)}


@dataclass(frozen=True)
class ClientRequest:
    """What the evaluator sends the client worker: the attacker's request and its sandbox.

    ``oracle_url``: with ``transport=http``, the cell's HTTP gateway (queries go there,
    not on the pipe).
    """

    attacker: AttackerRequest
    scratch: str
    confinement: Confinement
    plugins: PluginSetting
    oracle_url: str | None = None


class OracleClient(BudgetCounter):
    """The attack's oracle in the client process (the OracleHandle API over the wire)."""

    def __init__(self, conn: Any, budget: int, output: OutputMode, input_shape: tuple[int, ...],
                 input_range: tuple[float, float], client_timed: bool,
                 network: str = "none", seed: int = 0) -> None:
        self._conn = conn
        self.budget = int(budget)
        self.output = output
        self.input_shape = tuple(input_shape)
        self.input_range = input_range
        self._client_timed = client_timed
        self._network = network
        self._network_rng = np.random.default_rng([seed, NETWORK_STREAM])
        self._used = 0

    def _call(self, message: Message) -> Message:
        send(self._conn, message)
        reply = receive(self._conn, ("answer", "refused"))
        if reply.kind == "refused":
            raise QUERY_ERRORS.get(reply.meta.get("type"), QueryError)(reply.meta.get("message"))
        return reply

    def _ask(self, x: np.ndarray) -> QueryResult:
        start = time.perf_counter_ns()
        reply = self._call(Message("query", {}, {"x": x}))
        waited = (time.perf_counter_ns() - start) * 1e-9
        self._used = int(reply.meta["queries_used"])
        latency = reply.arrays["latency_s"]
        if self._client_timed:
            latency = np.where(reply.arrays["admitted"], waited, np.nan)
        return QueryResult(reply.arrays["outputs"], latency, reply.arrays["admitted"])

    def query(self, x: object) -> QueryResult:
        """Answer a batch ``(n, *input_shape)``; refusals raise the oracle's errors."""
        if hasattr(x, "detach") and hasattr(x, "cpu"):
            x = x.detach().cpu().numpy()
        if not isinstance(x, np.ndarray) or x.dtype == object:
            raise InvalidQueryError(f"query must be a numeric numpy array or torch tensor, got "
                                    f"{type(x).__name__}; nothing was charged")
        if not self._client_timed or x.ndim == 0 or len(x) <= 1:
            result = self._ask(x)
        else:
            self._call(Message("check", {}, {"x": x}))  # the whole batch is valid, affordable
            parts = [self._ask(x[i:i + 1]) for i in range(len(x))]  # one round trip per input
            result = QueryResult(*(np.concatenate([getattr(p, f) for p in parts])
                                   for f in ("outputs", "latency_s", "admitted")))
        if self._network == "none":
            return result
        latency = add_network_delay(result.latency_s, self._network, self._network_rng)
        return QueryResult(result.outputs, latency, result.admitted)

    def true_exits_for_reference(self) -> np.ndarray:
        """True exits so far; the evaluator refuses unless the attack is a reference."""
        return self._call(Message("true_exits")).arrays["exits"]


def client_worker(conn: Any, request: ClientRequest) -> None:
    """Entry point of the client worker process: confined before any plugin loads."""
    run_confined(request.confinement, client_main, conn, request)


def client_main(conn: Any, request: ClientRequest, report: ConfinementReport) -> None:
    """The confined client: load the plugins, run the attack, send its stolen model."""
    try:
        use_scratch(Path(request.scratch))
        request.plugins.apply()
        registry = load_registry(untrusted="import")
        record = encode_stolen(run_attack(request.attacker, _oracle(conn, request), registry,
                                          Path(request.scratch)))
        message = Message("stolen", {**record.meta, "sandbox": report.to_json()}, record.arrays)
    except BaseException as exc:
        message = Message("error", {"type": type(exc).__name__, "message": str(exc)[:4000],
                                    "harness_error": isinstance(exc, HarnessError),
                                    "traceback": traceback.format_exc()[-8000:]})
    try:
        send(conn, message)
    except (OSError, ValueError, WireError) as exc:
        send(conn, Message("error", {"type": type(exc).__name__, "harness_error": False,
                                     "message": f"the result could not be sent: {exc}"}))


def _oracle(conn: Any, request: ClientRequest) -> OracleHandle:
    """The attack's oracle: over the pipe, or over HTTP to the cell's gateway."""
    attacker = request.attacker
    if request.oracle_url is not None:
        return HttpOracle(request.oracle_url, client_id="attacker", network=attacker.network,
                          seed=attacker.seed)
    return OracleClient(conn, attacker.budget, attacker.output, attacker.input_shape,
                        attacker.input_range, attacker.client_timed, attacker.network,
                        attacker.seed)
