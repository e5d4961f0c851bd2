"""A deadline on reading a request's headers, which uvicorn does not have.

uvicorn's only read timer is ``timeout_keep_alive``, armed after a response: a connection that opens and
sends nothing, or half a header line, or (on a kept-alive connection) the first bytes of a next request
and then nothing, is held open for ever, and enough of them exhaust the server's file descriptors. This
protocol (uvicorn's own: httptools when installed, else h11) starts a timer whenever it waits for a
request's headers (the connection opened, or a new request's first bytes arrived) and stops it once the
headers are complete; when it fires the connection is closed, after a JSON 408 if part of a request had
arrived. The body has its own deadline in the front door (:class:`envlabel.service.http.app.Gate`), which
reads every body. Both are ``api.read_timeout``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

try:  # uvicorn's choice for "auto": httptools when it is installed
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - the daemon extra installs httptools
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]


class _HeaderDeadline(asyncio.Protocol):
    """Closes a connection that takes longer than ``header_timeout_s`` to send a request's headers.

    Written against what both uvicorn protocols share: ``transport``, ``cycle`` (a new object once a
    request's headers are complete; ``response_complete`` once it is answered) and the asyncio callbacks."""

    header_timeout_s = 10.0
    _timer: asyncio.TimerHandle | None = None
    _partial = False  # bytes of a request whose headers are not complete yet have arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        cycle = getattr(self, "cycle", None)
        if cycle is None or cycle.response_complete:  # between requests: these bytes start a new one
            self._partial = True
            if self._timer is None:
                self._arm()
        super().data_received(data)
        if getattr(self, "cycle", None) is not cycle:  # the parser completed a request's headers
            self._partial = False
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        transport: Any = getattr(self, "transport", None)
        if transport is None or transport.is_closing():
            return
        if self._partial:
            transport.write(_timeout_response(self.header_timeout_s))
        transport.close()


def _timeout_response(seconds: float) -> bytes:
    body = orjson.dumps({"error": "request timeout", "message": f"the request's headers did not arrive within "
                         f"{seconds:g}s (api.read_timeout); send the whole request at once, or raise "
                         "api.read_timeout for a slow link"})
    head = (f"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n")
    return head.encode() + body


def protocol_with_read_deadline(seconds: float, base: type[asyncio.Protocol] | None = None) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (``uvicorn.Config(http=...)``) with a ``seconds`` deadline on headers;
    ``base``: another of uvicorn's protocols than the one it would pick (the h11 fallback, in tests)."""
    return type("EnvlabelHTTPProtocol", (_HeaderDeadline, base or _Base), {"header_timeout_s": seconds})
