"""``transport=http``: the cell's attack talks HTTP to a gateway in the evaluator.

The gateway is the ``harness serve`` app (:mod:`harness.serving.http.app`) on loopback,
in a thread of the evaluator, answering with the cell's real oracle (the same budget,
validation, benign interleaving and private log as over the pipe) in front of the
server worker. Every client id shares that one oracle, so extra ids buy no budget. The
latency an attack sees is the round trip its HTTP client measured; the gateway holds
each answer for its served latency (modelled or measured), as ``harness serve`` does.
So, unlike ``transport=inproc`` under the modelled timings, metrics over HTTP are not
bit-reproducible. Reference attacks (true exits) are not available over HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from harness.cell.attacker import AttackerRequest
from harness.cell.spec import CellSpec
from harness.errors import HarnessError
from harness.serving.http.app import Health, ServeTarget, make_app
from harness.serving.http.background import serving
from harness.serving.oracle import Oracle

READY_TIMEOUT_S = 600.0


class HttpGateway:
    """The loopback HTTP front of one isolated cell."""

    def __init__(self, cell: CellSpec, request: AttackerRequest) -> None:
        self._ready = threading.Event()
        self._oracle: Oracle | None = None
        health = Health(victim=cell.victim.name, input_shape=tuple(request.input_shape),
                        num_classes=request.num_classes, input_range=tuple(request.input_range),
                        output=request.output, budget=request.budget)
        self.app = make_app(ServeTarget(health, self._oracle_for,
                                        measures=cell.settings.timing == "live"))

    def _oracle_for(self, client_id: str) -> Oracle:
        if not self._ready.wait(READY_TIMEOUT_S) or self._oracle is None:
            raise HarnessError("the cell's oracle was not ready in time")
        return self._oracle

    def attach(self, oracle: Oracle) -> None:
        """Serve ``oracle`` (called once the server worker is ready)."""
        self._oracle = oracle
        self._ready.set()

    @contextmanager
    def running(self) -> Iterator[str]:
        """Serve on a free loopback port while the block runs; yields the URL."""
        with serving(self.app) as url:
            yield url
