"""A request-header time-out for the HTTP server.

uvicorn (0.54, h11) bounds the idle time between requests (``timeout_keep_alive``) but not the time a client
takes to send a request's headers: any byte received cancels the keep-alive timer, so a client trickling a
header one byte at a time holds a connection (and a file descriptor) for as long as it likes ("slowloris").
Neither uvicorn nor h11 has an option for it, hence this small protocol subclass: a timer armed when a
connection opens and after each response, disarmed once h11 has parsed a whole request head; if it fires
while the head is still incomplete, the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_HEADER_TIMEOUT = 10.0


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-header time-out (``header_timeout`` seconds, a class attribute)."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_expired(self) -> None:
        self._header_timer = None
        idle_or_partial = self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)
        if idle_or_partial and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()  # a whole request head arrived

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def protocol_with_timeout(seconds: float) -> type[HeaderTimeoutH11Protocol]:
    """A protocol class for ``uvicorn.run(http=...)`` with the given header time-out."""
    return type("HeaderTimeoutH11Protocol", (HeaderTimeoutH11Protocol,), {"header_timeout": float(seconds)})
