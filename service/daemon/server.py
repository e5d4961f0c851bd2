"""The served app: the HTTP API with the MCP server at ``/mcp``, composed here and run on uvicorn (in the
foreground, or in a background thread); and the MCP server alone over stdio.

This is where the faces meet: the HTTP face and the MCP face never import each other; the runtime
hands the MCP routes to the API as a :class:`envlabel.service.http.app.Mounted`.

uvicorn picks uvloop and httptools when they are installed (they are daemon dependencies) and
falls back to asyncio and h11 (:mod:`envlabel.service.daemon.read_deadline` adds a deadline on reading
headers to whichever it picks). Access logging is off: every request is already counted in
the latency histogram at ``/metrics``, and a log line per label lookup would cost more than
the lookup.

Every face asks one :class:`~envlabel.service.core.authority.Authority`, built here with the decision log (its
writer thread runs while the app runs: started in the app's lifespan, and stopped, writing what is queued, when
the server shuts down) and the webhooks' ``notify`` for approval events (handed in by the daemon, which owns the
dispatcher).
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from types import TracebackType

import anyio.to_thread
import uvicorn

from envlabel.config import Config
from envlabel.errors import EnvlabelError
from envlabel.service.core.authority import Authority, Caller, Notify
from envlabel.service.core.decision_log import BatchedDecisionLog, decision_log_for
from envlabel.service.core.query import Query
from envlabel.service.daemon.metrics import Metrics
from envlabel.service.daemon.ports import bind_listener
from envlabel.service.daemon.read_deadline import protocol_with_read_deadline
from envlabel.service.http.app import Gate, Mounted, create_app
from envlabel.service.http.callers import MODES, mode_of
from envlabel.service.http.page import page_routes
from envlabel.service.mcp.tools import build_mcp, streamable_http
from envlabel.store.sql import Store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def build_app(config: Config, store: Store, *, host: str = DEFAULT_HOST, metrics: Metrics | None = None,
              mcp: bool = True, notify: Notify | None = None) -> Gate:
    """The API, with the MCP server mounted at ``/mcp`` unless ``mcp`` is False, and the approval page at
    ``/approvals``; the decision log runs while the app runs; ``notify``: where approval events go (the daemon's
    webhooks). Raises EnvlabelError if it would listen beyond loopback without tokens."""
    log = decision_log_for(config, store)
    authority = Authority(Query(config, store), log, notify)
    mounted = [Mounted((), lambda: _writing(log))]
    if mcp:
        mounted.append(Mounted(*streamable_http(build_mcp(authority), host)))
    return create_app(authority, metrics or Metrics(), host=host, mounted=mounted, page=page_routes(authority))


@asynccontextmanager
async def _writing(log: BatchedDecisionLog | None) -> AsyncIterator[None]:
    """The decision log's writer while the app serves; what is queued is written when it stops."""
    if log is None:
        yield
        return
    log.start()
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(log.stop)


def serve_stdio(config: Config, store: Store) -> None:
    """The MCP server over stdio (``envlabel mcp``), until the client closes it. Its caller is this process's:
    ENVLABEL_PRINCIPAL (else anonymous) and ENVLABEL_MODE."""
    log = decision_log_for(config, store)
    authority = Authority(Query(config, store), log)
    with _running(log):
        build_mcp(authority, stdio_caller(os.environ)).run("stdio")


def stdio_caller(environ: Mapping[str, str]) -> Caller:
    """Who calls over stdio: nothing authenticates there, so the process's claim is its principal. An
    ENVLABEL_MODE other than audit or enforce is ignored (logged by nothing: the tool answers say the mode)."""
    mode = environ.get("ENVLABEL_MODE", "").strip().lower()
    return Caller(interface="mcp", mode=mode_of(mode) if mode in MODES else None).claiming(
        environ.get("ENVLABEL_PRINCIPAL"))


@contextmanager
def _running(log: BatchedDecisionLog | None) -> Iterator[None]:
    if log is not None:
        log.start()
    try:
        yield
    finally:
        if log is not None:
            log.stop()


@dataclass(frozen=True)
class Tls:
    """The serving certificate (PEM, with its chain) and key of an HTTPS listener (``serve --tls-cert/--tls-key``)."""

    cert: str
    key: str

    def check(self) -> None:
        """Raise EnvlabelError, saying what to fix, when the pair cannot be loaded (before anything listens)."""
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise EnvlabelError(f"cannot serve TLS with --tls-cert {self.cert} --tls-key {self.key}: {exc}; give a "
                                "PEM certificate (chain) and its matching unencrypted PEM key") from None


def build_server(config: Config, store: Store, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 metrics: Metrics | None = None, *, log_level: str = "info", tls: Tls | None = None,
                 notify: Notify | None = None) -> uvicorn.Server:
    """A uvicorn server for the API (HTTPS with ``tls``); raises EnvlabelError if it would listen beyond loopback
    without tokens, or the TLS pair cannot be loaded."""
    if tls is not None:
        tls.check()
    app = build_app(config, store, host=host, metrics=metrics, notify=notify)
    # no proxy-headers middleware: nothing here reads the client address, and it runs on every request.
    # uvicorn has no deadline on reading a request's headers: the protocol adds one (the Gate times the body)
    http = protocol_with_read_deadline(config.api.read_timeout.total_seconds())
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, access_log=False, server_header=False,
                                         proxy_headers=False, log_level=log_level, lifespan="on", http=http,
                                         ssl_certfile=tls.cert if tls else None, ssl_keyfile=tls.key if tls else None))


def serve_app(config: Config, store: Store, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
              metrics: Metrics | None = None) -> None:
    """Serve the API in the foreground until interrupted (Ctrl-C, SIGTERM)."""
    build_server(config, store, host, port, metrics).run()


class BackgroundServer:
    """The API served from a daemon thread, for the daemon, the demo and tests::

        with BackgroundServer(config, store, port=0) as server:
            httpx.get(f"{server.url}/v1/label", params={"target": ...})

    The socket is bound when the server is built (or handed in as ``listener``, bound earlier with
    :func:`envlabel.service.daemon.ports.bind_listener`; the server then owns it), so a port in use is a
    clear :class:`EnvlabelError` before anything starts, and uvicorn serves that very socket: nothing can
    take the port between the check and the serving.
    """

    def __init__(self, config: Config, store: Store, host: str = DEFAULT_HOST, port: int = 0,
                 metrics: Metrics | None = None, *, listener: socket.socket | None = None,
                 tls: Tls | None = None, notify: Notify | None = None) -> None:
        self.tls = tls
        self.listener = listener if listener is not None else bind_listener(host, port)
        self._port: int = self.listener.getsockname()[1]  # kept: the socket is closed when the server stops
        try:
            self.server = build_server(config, store, host, self._port, metrics, log_level="warning", tls=tls,
                                       notify=notify)
        except BaseException:
            self.listener.close()
            raise
        self.host = host
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="envlabel-api", daemon=True)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self.listener])
        except BaseException as exc:  # uvicorn ends a failed startup with SystemExit: kept for start() to report
            self._failure = exc

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        """Serve, returning once uvicorn serves the socket; raises EnvlabelError (saying why) if it cannot."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:  # readiness: uvicorn sets .started once it serves the socket
            self._thread.join(0.01)  # returns at once when the serving thread has ended
            if self.server.started:
                break
            if not self._thread.is_alive():
                self.stop()
                raise EnvlabelError(f"the API on {self.url} stopped before it started: {self._why()}")
            if time.monotonic() > deadline:
                self.stop()
                raise EnvlabelError(f"the API on {self.url} did not start within {timeout_s}s (the log above "
                                    "says why)")
        return self

    def _why(self) -> str:
        failure = self._failure
        if failure is None:
            return "uvicorn returned without serving (the log above says why)"
        if isinstance(failure, SystemExit):  # uvicorn logs the cause, then exits
            return f"its startup failed with exit code {failure.code} (the log above says why)"
        return f"{type(failure).__name__}: {failure}"

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if not self._thread.is_alive():  # uvicorn closes it on a clean shutdown; not when startup failed
            self.listener.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
