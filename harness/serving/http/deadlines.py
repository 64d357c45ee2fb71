"""A deadline for each request's line and headers, which uvicorn does not have.

uvicorn closes idle keep-alive connections, but a client that sends a request's head one
byte at a time (a slow-headers attack) holds its connection for as long as it likes.
:class:`HeadDeadlineProtocol` is uvicorn's httptools protocol with one timer more: from
the moment a connection opens, and again from the first byte of every later request on
it, the request line and headers must be complete within ``header_timeout_s``, or the
connection is closed. Bodies have their own limit in the app (``body_timeout_s``, a 408).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request head is too slow."""

    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def head_deadline_protocol(header_timeout_s: float) -> type[HeadDeadlineProtocol]:
    """The protocol class with this deadline (uvicorn's ``http=`` takes a class)."""
    return type("HeadDeadlineProtocol", (HeadDeadlineProtocol,),
                {"header_timeout_s": float(header_timeout_s)})
