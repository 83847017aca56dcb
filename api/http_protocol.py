"""uvicorn's HTTP protocol with a deadline for request headers.

uvicorn times out idle keep-alive connections, but not a client that sends its headers a line every few
seconds (or nothing at all after connecting): each such connection is held forever, and a few hundred of them
use up the process (slowloris). This closes a connection whose request headers are not complete within
``header_timeout_s`` of its start or of the request's first byte; the body has its own deadline
(``api.middleware.BodyLimit``).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from parley.worker.settings import get_settings


class HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout_s: float | None = None
    """``None``: ``PARLEY_HEADER_TIMEOUT_S``. A class attribute, not an argument: uvicorn builds the protocol
    itself, and with several workers it pickles the class by name into each process."""
    _header_timer: asyncio.TimerHandle | None = None

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

    def _arm(self) -> None:
        self._disarm()
        timeout_s = self.header_timeout_s if self.header_timeout_s is not None else \
            get_settings().header_timeout_s
        self._header_timer = self.loop.call_later(timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def with_header_deadline(header_timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """The protocol with this deadline rather than the setting's (in-process servers: tests, benchmarks)."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": header_timeout_s})
