"""Run an app on loopback in a background thread (tests, benchmarks, ``transport=http`` later)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette

from harness.errors import HarnessError
from harness.serving.http.deadlines import head_deadline_protocol


def uvicorn_options(app: Starlette) -> dict[str, object]:
    """The uvicorn settings every harness server uses: the app's head deadline, idle
    keep-alive connections closed after 75 s, no access log, no server header."""
    limits = app.state.service.limits
    return {"http": head_deadline_protocol(limits.header_timeout_s), "timeout_keep_alive": 75,
            "access_log": False, "server_header": False}


@contextmanager
def serving(app: Starlette, host: str = "127.0.0.1", port: int = 0,
            start_timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``app`` in a daemon thread; yields its ``http://host:port`` (port 0 = a free one)."""
    config = uvicorn.Config(app, **uvicorn_options(app), host=host, port=port,
                            log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="harness-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise HarnessError(f"the HTTP server did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
