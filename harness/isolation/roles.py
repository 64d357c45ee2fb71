"""``isolation=process``: the cell's server and attacker in sandboxed worker processes.

The one driver (:mod:`harness.cell.driver`) runs in the evaluator; these roles start one
server worker (victim + defense; no attack named, no data split) and one client worker
(the attack with an oracle client and its pool only) per cell, and guard the evaluator
while they run: the evaluator is made non-dumpable, the fork server preloads while the
victim is prepared, workers drop privileges where they can, and a tripwire over the
finished results and the victim cache is armed before the first worker starts and
checked after the last one stops (:mod:`harness.isolation.tripwire`). With
``transport=http`` the attack reaches its oracle over HTTP through a loopback gateway
(:mod:`harness.isolation.gateway`).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from harness.cell.attacker import AttackerRequest
from harness.cell.roles import ServerRequest
from harness.cell.spec import CellEnvironment, CellSpec
from harness.cell.stolen import StolenRecord
from harness.cell.substitute import SandboxedStolen, SubstituteOutputs
from harness.errors import ComponentFailure
from harness.isolation.broker import AttackClient
from harness.isolation.client_worker import ClientRequest
from harness.isolation.confine import Confinement
from harness.isolation.gateway import HttpGateway
from harness.isolation.sandbox import (
    PluginSetting,
    privileges_droppable,
    protect_evaluator,
    scratch_dir,
    worker_confinement,
    worker_context,
)
from harness.isolation.scorer import score_in_sandbox
from harness.isolation.server_worker import RemoteServer, ServerWorkerRequest
from harness.isolation.tripwire import Tripwire
from harness.plugins.registry import Registry
from harness.serving.oracle import Oracle


class IsolationWarning(UserWarning):
    """The kernel confines plugin workers with fewer mechanisms than it could."""


DEFAULT_CPU_SECONDS = 4 * 3600
"""A plugin worker's CPU-time limit without ``timeout=`` (with it: timeout x cores + 60 s)."""


class IsolatedAttacker:
    """The attack's client worker, and the HTTP gateway it queries with ``transport=http``."""

    def __init__(self, client: AttackClient, gateway: HttpGateway | None) -> None:
        self.client = client
        self.gateway = gateway

    def steal(self, oracle: Oracle, *, label: str, component: str,
              defense_failure: Any) -> StolenRecord:
        if self.gateway is not None:
            self.gateway.attach(oracle)
        return self.client.steal(oracle, label=label, component=component,
                                 defense_failure=defense_failure)


class IsolatedSession:
    """The workers of one cell; :meth:`close` stops them and checks the tripwire."""

    def __init__(self, cell: CellSpec, registry: Registry, env: CellEnvironment) -> None:
        self.cell = cell
        self.registry = registry
        self.env = env
        self.drop, self.why = privileges_droppable()
        self.tripwire: Tripwire | None = None
        self.server: RemoteServer | None = None
        self.client: AttackClient | None = None
        self._server_scratch = Path()
        self._attacker = ExitStack()

    def confinement(self, scratch: Path, connect_port: int | None = None) -> Confinement:
        """A plugin worker's confinement: ``scratch`` and Python, never ``out=`` or the
        cache; CPU time ``timeout`` x cores when set, else 4 h."""
        timeout = self.env.timeout_s
        cpu = int(timeout * (os.cpu_count() or 1)) + 60 if timeout else DEFAULT_CPU_SECONDS
        return worker_confinement(scratch, (self.env.out, self.env.cache_dir),
                                  drop=self.drop, connect_port=connect_port,
                                  memory_bytes=self.env.memory_bytes, cpu_seconds=cpu)

    def start_server(self, request: ServerRequest) -> RemoteServer:
        self.tripwire = Tripwire.arm(self.env.out, self.env.cache_dir, self.env.rewrites)
        entry = self.registry.get("defense", self.cell.defense.name)
        self._server_scratch = scratch_dir(self.drop)
        confinement = self.confinement(self._server_scratch)
        self.server = RemoteServer(ServerWorkerRequest.of(request, confinement),
                                   entry.label(self.cell.defense.display),
                                   f"defense:{self.cell.defense.name}")
        return self.server

    def start_attacker(self, request: AttackerRequest) -> IsolatedAttacker:
        gateway, url = None, None
        if self.cell.settings.transport == "http":
            gateway = HttpGateway(self.cell, request)
            url = self._attacker.enter_context(gateway.running())
        scratch = scratch_dir(self.drop)
        port = None if url is None else int(urlsplit(url).port or 80)
        self.client = AttackClient(ClientRequest(request, str(scratch),
                                                 self.confinement(scratch, port),
                                                 PluginSetting.current(), url))
        self._attacker.callback(self.client.close)
        return IsolatedAttacker(self.client, gateway)

    def stop_attacker(self) -> None:
        self._attacker.close()

    def score_sandboxed(self, stolen: SandboxedStolen, x: np.ndarray) -> SubstituteOutputs:
        return score_in_sandbox(stolen, x, (self.env.out, self.env.cache_dir))

    def level(self) -> str:
        """``kernel`` when every worker of the cell held every mechanism, else what was
        missing in any (docs/design.md section 10)."""
        reports = [w.sandbox for w in (self.server, self.client) if w is not None and w.sandbox]
        if not reports:
            return "unknown"  # no worker started far enough to report
        missing = sorted({m for report in reports for m in report.get("missing", {})})
        return "kernel" if not missing else "partial:-" + ",-".join(missing)

    def describe(self) -> dict[str, Any]:
        return {"mode": "process", "level": self.level(),
                "transport": self.cell.settings.transport,
                "server": self.server.sandbox if self.server else {},
                "client": self.client.sandbox if self.client else {},
                "server_compute_s": self.server.compute_s if self.server else 0.0,
                "privileges": "dropped to nobody" if self.drop else f"kept ({self.why})"}

    def close(self) -> None:
        """Stop every worker, then check what they changed outside the cell."""
        try:
            self.stop_attacker()
        finally:
            if self.server is not None:
                self.server.close()
                shutil.rmtree(self._server_scratch, ignore_errors=True)
            if self.tripwire is not None:
                self._check_tripwire(self.tripwire)

    def _check_tripwire(self, tripwire: Tripwire) -> None:
        results, cache = tripwire.changed()
        if not results and not cache:
            return
        tripwire.repair(results, cache)
        attack = self.registry.get("attack", self.cell.attack.name).label()
        defense = self.registry.get("defense", self.cell.defense.name).label(
            self.cell.defense.display)
        names = ", ".join(str(p) for p in [*results, *cache][:5])
        raise ComponentFailure(
            f"files outside the cell changed while {attack} and {defense} ran: {names}"
            f"{' ...' if len(results) + len(cache) > 5 else ''}; {len(results)} finished "
            f"result(s) were restored and {len(cache)} cache file(s) removed (rebuilt on next "
            "use). A plugin must not write outside its scratch folder",
            f"attack:{self.cell.attack.name}+defense:{self.cell.defense.name}")


class IsolatedRoles:
    """``isolation=process`` (the default): server and attacker in sandboxed workers."""

    mode = "process"

    @contextmanager
    def session(self, cell: CellSpec, registry: Registry,
                env: CellEnvironment) -> Iterator[IsolatedSession]:
        protect_evaluator()
        worker_context()  # the fork server preloads while the victim is prepared
        session = IsolatedSession(cell, registry, env)
        try:
            yield session
        finally:
            session.close()
            level = session.level()
            if level.startswith("partial"):
                warnings.warn(  # the warnings filter shows each level once
                    f"isolation=process: plugin workers here run with isolation level {level} "
                    "(a mechanism the kernel or this user lacks; see docs/design.md section "
                    "10); every cell records its level, and it is part of the group key",
                    IsolationWarning, stacklevel=3)
