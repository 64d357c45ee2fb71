"""The server role in its own process, and the evaluator's proxy to it.

:func:`server_main` builds the cell's server exactly as ``isolation=none`` does
(:func:`harness.cell.server.role_server`): the victim comes from the evaluator as data
(:class:`VictimPayload`; loaded from the cache only for a network without a registry
recipe, and then checked against the evaluator's weights), with the backend, timing and
defense factory. It keeps no data split (a defense finds no test labels). The victim
is served from trusted plugins only (:func:`_serve_victim`); then the worker is confined
by the kernel (:mod:`harness.isolation.confine`) before the defense's plugin loads, and
it answers endpoint requests through :class:`harness.cell.local.LocalServer`:
a fresh defense instance per endpoint, the defense's errors reported with its name.
:class:`RemoteServer` is the evaluator's server handle on it.
"""

from __future__ import annotations

import gc
import signal
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.cell.local import LocalEndpoint, LocalServer
from harness.cell.roles import ServerRequest
from harness.cell.server import Server, Stream, inputs_only, role_server
from harness.cell.spec import CellEnvironment, CellSpec
from harness.cell.stolen import StolenModelError, strategy_from_json
from harness.errors import ComponentFailure, HarnessError, UnknownComponentError
from harness.isolation.confine import Confinement, ConfinementReport, run_confined
from harness.isolation.sandbox import PluginSetting, stop_worker, worker_context
from harness.isolation.wire import Message, WireError, receive, send
from harness.plugins.registry import Registry, load_registry
from harness.plugins.toolbox import NetworkRecipe, Toolbox
from harness.protocol import TrainedVictim
from harness.serving.endpoint import RESPONSE_FIELDS, EndpointResponse


@dataclass(frozen=True)
class VictimPayload:
    """The evaluator's victim as data: network recipe and weights, strategy, the inputs
    of the validation split (for the server description), never a label."""

    name: str
    family: str
    weights_hash: str
    details: dict[str, Any]
    recipe: dict[str, Any]
    state: dict[str, np.ndarray]
    strategy: dict[str, Any]
    dataset: tuple[str, tuple[int, ...], int, tuple[float, float]]
    val_x: np.ndarray

    @classmethod
    def of(cls, victim: TrainedVictim) -> VictimPayload | None:
        """None when the network was not built through the registry (no recipe)."""
        recipe = getattr(victim.model, "harness_recipe", None)
        if not isinstance(recipe, NetworkRecipe):
            return None
        data = victim.data
        return cls(victim.name, victim.family, victim.weights_hash, dict(victim.details),
                   recipe.to_json(),
                   {k: v.detach().cpu().numpy() for k, v in victim.model.state_dict().items()},
                   victim.strategy.to_json(),
                   (data.name, data.input_shape, data.num_classes, data.input_range),
                   np.array(data.val.x))

    def rebuild(self, registry: Registry, device: str) -> TrainedVictim:
        try:
            model = Toolbox(registry).from_recipe(NetworkRecipe.from_json(self.recipe))
            model.load_state_dict({k: torch.as_tensor(v) for k, v in self.state.items()})
            model = model.to(device).eval()
            strategy = strategy_from_json(self.strategy, registry, model.num_exits,
                                          model.num_classes)
        except UnknownComponentError:
            raise  # the server worker says which plugin to trust
        except (ValueError, StolenModelError) as exc:
            raise HarnessError(f"the evaluator's victim could not be rebuilt: {exc}") from None
        name, shape, classes, input_range = self.dataset
        data = inputs_only(name, tuple(shape), classes, tuple(input_range), self.val_x)
        return TrainedVictim(self.name, model, strategy, data, self.family, self.weights_hash,
                             dict(self.details))


@dataclass(frozen=True)
class ServerWorkerRequest:
    """What the evaluator sends a server worker (no attack, no secret, no labels)."""

    cell: CellSpec
    env: CellEnvironment
    device: str
    weights_hash: str
    salt: tuple[int, ...]
    confinement: Confinement
    plugins: PluginSetting
    victim: VictimPayload | None = None

    @classmethod
    def of(cls, request: ServerRequest, confinement: Confinement) -> ServerWorkerRequest:
        return cls(request.cell, request.env, request.device, request.victim.weights_hash,
                   request.salt, confinement, PluginSetting.current(),
                   VictimPayload.of(request.victim))


def _serve_victim(conn: Any, request: ServerWorkerRequest) -> Server | BaseException:
    """Before the confinement, with trusted plugins only: the victim served, its timing,
    the server's description; no defense yet (its plugin may be hostile)."""
    try:
        request.plugins.apply()
        registry = load_registry(untrusted="skip")
        victim = (None if request.victim is None
                  else request.victim.rebuild(registry, request.device))
        server = role_server(request.cell, registry, request.env, request.device,
                             request.salt, victim, with_defense=False)
    except UnknownComponentError as exc:
        return HarnessError(
            f"{exc}. The server worker serves the victim before it is confined, so the "
            "victim, its dataset, architecture and backend must come from the harness or a "
            "trusted plugin: name its entry point or distribution in HARNESS_TRUSTED_PLUGINS "
            "(comma-separated), or run with isolation=none")
    except BaseException as exc:
        return exc
    if server.victim.weights_hash != request.weights_hash:
        return HarnessError("the victim the server loaded does not match the evaluator's "
                            f"(weights {server.victim.weights_hash[:12]} vs "
                            f"{request.weights_hash[:12]}); the cache changed during the cell")
    return server


def server_worker(conn: Any, request: ServerWorkerRequest) -> None:
    """Entry point of the server worker process: the victim is served from trusted code,
    then the worker is confined, then the defense's plugin loads."""
    run_confined(request.confinement, server_main, conn, request, prepare=_serve_victim)


def _with_defense(request: ServerWorkerRequest, served: Server | BaseException) -> LocalServer:
    if isinstance(served, BaseException):
        raise served
    request.plugins.apply()
    return LocalServer(served.with_defense(request.cell, load_registry(untrusted="import")))


def server_main(conn: Any, request: ServerWorkerRequest, served: Server | BaseException,
                report: ConfinementReport) -> None:
    """The confined server: load the defense, then answer the evaluator until closed."""
    try:
        server = _with_defense(request, served)
    except BaseException as exc:
        send(conn, Message("error", {"type": type(exc).__name__, "message": str(exc)[:4000],
                                     "traceback": traceback.format_exc()[-4000:]}))
        return
    gc.collect()
    quantiles = np.asarray(server.latency_quantiles, dtype=np.float64)
    send(conn, Message("ready", {"sandbox": report.to_json(),
                                 "deployed": server.deployed_strategy},
                       {"latency_quantiles": quantiles}))
    endpoints: dict[str, LocalEndpoint] = {}
    while True:
        try:
            message = receive(conn, ("endpoint", "respond", "full_latency", "report", "close"))
        except (EOFError, OSError):
            return
        if message.kind == "close":
            return
        try:
            reply = _answer(server, endpoints, message)
        except Exception as exc:  # a bug or a hostile defense: reported, never a dead worker
            reply = Message("failure", {"message": f"{server.server.defense_label}: the server "
                                        f"failed with {type(exc).__name__}: {exc}"})
        send(conn, reply)


def _answer(server: LocalServer, endpoints: dict[str, LocalEndpoint], message: Message) -> Message:
    meta = message.meta
    if message.kind == "endpoint":
        endpoints[meta["name"]] = server.endpoint(
            Stream(meta["defense_stream"]), Stream(meta["timing_stream"]),
            client_id=str(meta["client_id"]), defended=bool(meta["defended"]))
        return Message("ok")
    if message.kind == "report":
        try:
            return Message("report", {"report": endpoints[meta["name"]].report()})
        except ComponentFailure as exc:
            return Message("failure", {"message": str(exc), "component": exc.component})
    x = message.arrays["x"].astype(np.float32, copy=False)
    if message.kind == "full_latency":
        return Message("latency", {}, {"latency_s": server.full_latency(x)})
    endpoint = endpoints[meta["name"]]
    before = endpoint.server_compute_s
    try:
        response = endpoint.respond(x, client_id=meta.get("client_id"),
                                    benign=bool(meta.get("benign")))
    except ComponentFailure as exc:
        return Message("failure", {"message": str(exc), "component": exc.component})
    return Message("response", {"server_compute_s": endpoint.server_compute_s - before},
                   {f: getattr(response, f) for f in RESPONSE_FIELDS})


class RemoteEndpoint:
    """The evaluator's handle on one endpoint in the server worker."""

    def __init__(self, server: RemoteServer, name: str) -> None:
        self._server = server
        self.name = name
        self.failure: ComponentFailure | None = None

    def _failed(self, reply: Message) -> ComponentFailure:
        self.failure = ComponentFailure(str(reply.meta.get("message")),
                                        self._server.defense_component)
        return self.failure

    def respond(self, x: np.ndarray, *, client_id: str | None = None,
                benign: bool = False) -> EndpointResponse:
        """One batch of one client; ``benign`` selects the benign clients' timing stream."""
        reply = self._server.call(Message("respond", {"name": self.name, "client_id": client_id,
                                                      "benign": benign}, {"x": x}),
                                  ("response", "failure"))
        if reply.kind == "failure":
            raise self._failed(reply)
        self._server.compute_s += float(reply.meta.get("server_compute_s", 0.0))
        fields = {f: reply.arrays[f] for f in RESPONSE_FIELDS}
        n = len(x)
        if any(len(v) != n for v in fields.values()):
            raise self._server.died("answered a batch with the wrong number of rows")
        return EndpointResponse(**fields)

    def report(self) -> dict[str, float]:
        """The defense's counters (:meth:`harness.serving.endpoint.Endpoint.report`)."""
        reply = self._server.call(Message("report", {"name": self.name}), ("report", "failure"))
        if reply.kind == "failure":
            raise self._failed(reply)
        counters = reply.meta.get("report")
        if not isinstance(counters, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in counters.values()):
            raise self._server.died("sent a malformed defense report")
        return {str(k): float(v) for k, v in counters.items()}


SELF_INFLICTED = frozenset(int(s) for s in (
    signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT,
    signal.SIGTRAP, signal.SIGSYS, signal.SIGXCPU, signal.SIGXFSZ))
"""Signals a worker's own code brings on itself (faults, aborts, its rlimits)."""


class RemoteServer:
    """A server worker process, started for one cell and stopped with :meth:`close`."""

    def __init__(self, request: ServerWorkerRequest, defense_label: str,
                 defense_component: str) -> None:
        self.defense_label = defense_label
        self.defense_component = defense_component
        context = worker_context()
        self._conn, child = context.Pipe()
        self._process = context.Process(target=server_worker, args=(child, request), daemon=True)
        self._process.start()
        child.close()
        self.sandbox: dict[str, Any] = {}
        self.latency_quantiles: np.ndarray | None = None
        self.deployed_strategy: dict[str, Any] | None = None
        self.compute_s = 0.0
        self._count = 0

    def wait_ready(self) -> None:
        """Block until the worker has built the server (it builds while the evaluator works)."""
        ready = self._receive(("ready", "error"))
        if ready.kind == "error":
            self.close()
            raise HarnessError(f"the server worker could not start: {ready.meta.get('message')}")
        self.sandbox = dict(ready.meta.get("sandbox", {}))
        self.latency_quantiles = ready.arrays["latency_quantiles"]
        deployed = ready.meta.get("deployed")  # untrusted data: the driver checks it
        self.deployed_strategy = deployed if isinstance(deployed, dict) else None

    def died(self, what: str) -> ComponentFailure:
        """The failure of a server worker that ended: the defense's when its own code can
        have ended it (an exit, a fault, the CPU limit), nobody's when a signal from
        outside killed it (the attack cannot send one: docs/design.md section 10)."""
        code = self._process.exitcode
        if code is not None and code < 0 and -code not in SELF_INFLICTED:
            name = signal.Signals(-code).name
            return ComponentFailure(
                f"the server worker {what}: killed by {name} from outside the cell (the user, "
                "the OOM killer, the machine), not by anything the attack can send; not blamed "
                f"on {self.defense_label} or the attack. Run the cell again", None)
        return ComponentFailure(f"{self.defense_label}: the server process {what} (exit code "
                                f"{code}); a defense stage probably killed it",
                                self.defense_component)

    def _receive(self, expected: tuple[str, ...]) -> Message:
        try:
            return receive(self._conn, expected)
        except (EOFError, OSError):
            self._process.join(timeout=5)
            raise self.died("exited") from None
        except WireError as exc:
            raise self.died(f"sent a malformed reply ({exc})") from None

    def call(self, message: Message, expected: tuple[str, ...]) -> Message:
        try:
            send(self._conn, message)
        except (OSError, BrokenPipeError):
            raise self.died("is gone") from None
        return self._receive(expected)

    def endpoint(self, defense_stream: Stream, timing_stream: Stream, *, client_id: str,
                 defended: bool = True) -> RemoteEndpoint:
        self._count += 1
        name = f"endpoint{self._count}"
        self.call(Message("endpoint", {"name": name, "defense_stream": int(defense_stream),
                                       "timing_stream": int(timing_stream),
                                       "client_id": client_id, "defended": defended}), ("ok",))
        return RemoteEndpoint(self, name)

    def full_latency(self, x: np.ndarray) -> np.ndarray:
        return self.call(Message("full_latency", {}, {"x": x}), ("latency",)).arrays["latency_s"]

    def close(self) -> None:
        stop_worker(self._conn, self._process, Message("close"))
