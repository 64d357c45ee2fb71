"""The evaluator's side of an isolated attack: start the client, answer it, rebuild its result.

:func:`broker_attack` starts the client worker, answers its messages with the real
:class:`~harness.serving.oracle.Oracle` (which sits in the evaluator, in front of the
server worker) until the client sends its stolen model or an error, enforces the
and rebuilds the stolen model through the registry. Any
misbehaviour of the client (a malformed message, an unexpected kind, dying) is the
attack's failure, named.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ComponentFailure, QueryError
from harness.isolation.client_worker import ClientRequest, client_main
from harness.isolation.sandbox import worker_context
from harness.isolation.stolen import StolenModelError, rebuild_stolen
from harness.isolation.wire import Message, WireError, receive, send
from harness.plugins.registry import Registry
from harness.protocol import StolenModel
from harness.serving.oracle import Oracle

CLIENT_KINDS = ("query", "check", "true_exits", "stolen", "error")


@dataclass(frozen=True)
class AttackOutcome:
    """The rebuilt stolen model and what the client's sandbox enforced."""

    stolen: StolenModel
    sandbox: dict[str, Any]


def _answer(oracle: Oracle, message: Message) -> Message:
    try:
        if message.kind == "true_exits":
            return Message("answer", {}, {"exits": oracle.true_exits_for_reference()})
        x = message.arrays.get("x")
        if x is None:
            raise QueryError("a query message must carry an array named 'x'")
        if message.kind == "check":
            oracle.check(x)
            return Message("answer", {"queries_used": oracle.queries_used})
        result = oracle.query(x)
    except QueryError as exc:
        return Message("refused", {"type": type(exc).__name__, "message": str(exc)})
    return Message("answer", {"queries_used": oracle.queries_used},
                   {"outputs": result.outputs, "latency_s": result.latency_s,
                    "admitted": result.admitted})


class AttackClient:
    """The client worker of one cell: started early, then served by :meth:`serve`."""

    def __init__(self, request: ClientRequest) -> None:
        self.request = request
        context = worker_context()
        self._conn, child = context.Pipe()
        self._process = context.Process(target=client_main, args=(child, request), daemon=True)
        self._process.start()
        child.close()

    def serve(self, oracle: Oracle, registry: Registry, *, label: str, component: str,
              defense_failure: Any) -> AttackOutcome:
        """Answer the attack with ``oracle`` until it returns; raises ComponentFailure."""

        def fail(message: str) -> ComponentFailure:
            failure = defense_failure()
            return failure if failure is not None else ComponentFailure(f"{label}: {message}",
                                                                        component)

        conn, process = self._conn, self._process
        while True:
            if not conn.poll(0.05):
                if not process.is_alive() and not conn.poll(0):
                    process.join()
                    raise fail(f"the attack's process exited with code {process.exitcode} "
                               "before returning a stolen model")
                continue
            try:
                message = receive(conn, CLIENT_KINDS)
            except EOFError:
                process.join()
                raise fail(f"the attack's process exited with code {process.exitcode} before "
                           "returning a stolen model") from None
            except WireError as exc:
                raise fail(f"sent a malformed message ({exc})") from None
            if message.kind == "error":
                raise _attack_error(message.meta, label, component, defense_failure())
            if message.kind == "stolen":
                try:
                    stolen = rebuild_stolen(message, registry,
                                            input_shape=self.request.input_shape,
                                            num_classes=self.request.num_classes)
                except StolenModelError as exc:
                    raise fail(str(exc)) from None
                return AttackOutcome(stolen, dict(message.meta.get("sandbox") or {}))
            reply = _answer(oracle, message)
            failure = defense_failure()
            if failure is not None:  # the defense failed while answering: it is the defense's
                raise failure
            send(conn, reply)

    def close(self) -> None:
        """Stop the worker (if still running) and remove its scratch folder."""
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._conn.close()
        shutil.rmtree(Path(self.request.scratch), ignore_errors=True)


def _attack_error(meta: dict[str, Any], label: str, component: str,
                  defense_failure: ComponentFailure | None) -> ComponentFailure:
    if defense_failure is not None:
        return defense_failure
    kind, text = str(meta.get("type", "Error")), str(meta.get("message", ""))
    reason = text if meta.get("harness_error") else f"{kind}: {text}"
    failure = ComponentFailure(f"{label} raised {reason}", component)
    failure.remote_traceback = str(meta.get("traceback", ""))  # type: ignore[attr-defined]
    return failure
