"""The raw ASGI plumbing of the HTTP API's front door (:class:`envlabel.service.http.app.Gate`): reading a
bounded, timed body and replaying it, JSON answers sent without a framework, a large answer paced in
pieces, and the status of whatever the app behind it answered."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import nullcontext
from typing import Any
from urllib.parse import unquote_plus

import anyio
import orjson
from fastapi.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("envlabel.api")
JSON = "application/json"
#: bytes of a large answer sent per turn of the event loop
PIECE = 256 * 1024


def dumps(body: Any) -> bytes:
    """JSON bytes (orjson: the answers are plain dicts and lists)."""
    return orjson.dumps(body)


def error_body(error: str, message: str, **extra: Any) -> dict[str, Any]:
    """The body of every error answer: ``{"error", "message", ...}``, the message saying what to do."""
    return {"error": error, "message": message, **extra}


def internal_error(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """A logged JSON 500 for a failure nothing else answered."""
    log.error("request failed", exc_info=exc)
    return 500, error_body("internal error", f"{type(exc).__name__}: {exc}; the server log has the traceback. "
                                             "Treat the target as production until this is fixed.")


def paced_response(payload: bytes, encoding: str | None = None, *,
                   one_at_a_time: anyio.Lock | None = None) -> Response:
    """A JSON answer that is sent :data:`PIECE` bytes at a time, the event loop answering other requests between
    pieces: written in one go, a findings answer of tens of MiB would make every label lookup wait behind it.
    ``encoding``: the payload's content encoding (``gzip``), if it is compressed. ``one_at_a_time``: a lock that
    large answers sharing it are sent under, one after the other, so that however many clients loop on them a
    label lookup waits behind at most one piece."""
    headers = {"content-encoding": encoding, "vary": "accept-encoding"} if encoding else {}
    if len(payload) <= PIECE:
        return Response(payload, media_type=JSON, headers=headers)

    async def pieces() -> AsyncIterator[memoryview]:
        view = memoryview(payload)
        async with one_at_a_time or nullcontext():
            for start in range(0, len(view), PIECE):
                yield view[start:start + PIECE]
                await anyio.sleep(0)  # a fast reader would otherwise take piece after piece without yielding

    return StreamingResponse(pieces(), media_type=JSON, headers={"content-length": str(len(payload)), **headers})


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (``gzip``, ``gzip;q=0.5``, ``*``; not ``gzip;q=0``).

    >>> accepts_gzip("gzip, deflate"), accepts_gzip("br;q=1, gzip;q=0"), accepts_gzip(None)
    (True, False, False)
    """
    for item in (accept_encoding or "").lower().split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip() in ("gzip", "x-gzip", "*"):
            q = params.strip().removeprefix("q=").strip() if params.strip().startswith("q=") else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


def query_param(query_string: bytes, name: bytes) -> str | None:
    """The first value of ``name`` in a query string, as parse_qsl would decode it (without parsing the rest)."""
    for pair in query_string.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == name:
            return unquote_plus(value.decode("latin-1"))
    return None


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lowercase), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def send_json(send: Send, status: int, body: Mapping[str, Any], *, close: bool = False) -> int:
    """Answer ``body`` as JSON; ``close``: and close the connection (its request was not read to the end)."""
    payload = dumps(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="envlabel"'))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
    return status


async def read_body(receive: Receive, limit: int, timeout_s: float) -> bytes | tuple[int, dict[str, Any]]:
    """The whole request body, or the refusal (413 past ``limit`` bytes, 408 when it has not all arrived within
    ``timeout_s``: a stalled or trickled upload must not hold a connection and its task forever)."""
    chunks: list[bytes] = []
    size = 0
    with anyio.move_on_after(timeout_s):
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return 413, error_body("body too large", f"request bodies are limited to {limit} bytes "
                                                         "(api.max_body_bytes); send fewer targets per request")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    return 408, error_body("request timeout", f"the request body did not arrive within {timeout_s:g}s "
                                              "(api.read_timeout); send the whole body at once, or raise "
                                              "api.read_timeout for a slow link")


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that delivers the already read ``body`` first, for the app behind the front door."""
    delivered = False

    async def replayed() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()  # later calls wait for the disconnect, as the server would deliver it
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def call_with_status(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> int:
    """Run ``app`` and return the status it answered; a failure before it answered is a JSON 500."""
    status = 500
    started = finished = False

    async def recording_send(message: Message) -> None:
        nonlocal status, started, finished
        if message["type"] == "http.response.start":
            status, started = message["status"], True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            finished = True
        await send(message)

    try:
        await app(scope, receive, recording_send)
    except Exception as exc:
        if not started:
            return await send_json(send, *internal_error(exc))
        if not finished:
            raise  # a half-sent response: the server closes the connection, so the client sees it failed
        # Starlette re-raises after its handler sent the JSON 500 (and logged it): the answer is complete
    return status
