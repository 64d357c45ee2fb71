"""The evaluator's side of an isolated attack: the client worker, answered with the real oracle.

:class:`AttackClient` starts the client worker and, in :meth:`AttackClient.steal`,
answers its messages with the real :class:`~harness.serving.oracle.Oracle` (which sits in
the evaluator, in front of the server worker) until the client sends its stolen model as
a record or an error. Any misbehaviour of the client (a malformed message, an unexpected
kind, dying) is the attack's failure, named; a defense that failed meanwhile is the
defense's. The driver rebuilds and checks the record (:mod:`harness.cell.stolen`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from harness.cell.attacker import attack_failure
from harness.cell.stolen import StolenRecord
from harness.errors import ComponentFailure, QueryError
from harness.isolation.client_worker import ClientRequest, client_worker
from harness.isolation.sandbox import worker_context
from harness.isolation.wire import Message, WireError, receive, send
from harness.serving.oracle import Oracle

CLIENT_KINDS = ("query", "check", "true_exits", "stolen", "error")


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
    """The client worker of one cell: started early, then served by :meth:`steal`."""

    def __init__(self, request: ClientRequest) -> None:
        self.request = request
        self.sandbox: dict[str, Any] = {}
        context = worker_context()
        self._conn, child = context.Pipe()
        self._process = context.Process(target=client_worker, args=(child, request), daemon=True)
        self._process.start()
        child.close()

    def steal(self, oracle: Oracle, *, label: str, component: str,
              defense_failure: Any) -> StolenRecord:
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
                meta = dict(message.meta)
                self.sandbox = dict(meta.pop("sandbox", None) or {})
                return StolenRecord(meta, message.arrays)
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
    failure = attack_failure(str(meta.get("type", "Error")), str(meta.get("message", "")),
                             bool(meta.get("harness_error")), label, component)
    failure.remote_traceback = str(meta.get("traceback", ""))  # type: ignore[attr-defined]
    return failure
