"""The served app: the HTTP API with the MCP server at ``/mcp``, composed here and run on uvicorn (in the
foreground, or in a background thread); and the MCP server alone over stdio.

This is where the faces meet: the HTTP face and the MCP face never import each other; the runtime
hands the MCP routes to the API as a :class:`envlabel.service.http.app.Mounted`.

uvicorn picks uvloop and httptools when they are installed (they are daemon dependencies) and
falls back to asyncio and h11. Access logging is off: every request is already counted in
the latency histogram at ``/metrics``, and a log line per label lookup would cost more than
the lookup.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn

from envlabel.config import Config
from envlabel.errors import EnvlabelError
from envlabel.service.core.query import Query
from envlabel.service.daemon.metrics import Metrics
from envlabel.service.http.app import Gate, Mounted, create_app
from envlabel.service.mcp.tools import build_mcp, streamable_http
from envlabel.store.sql import Store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def build_app(config: Config, store: Store, *, host: str = DEFAULT_HOST, metrics: Metrics | None = None,
              mcp: bool = True) -> Gate:
    """The API, with the MCP server mounted at ``/mcp`` unless ``mcp`` is False; raises EnvlabelError if it
    would listen beyond loopback without tokens."""
    query = Query(config, store)
    mounted = [Mounted(*streamable_http(build_mcp(query), host))] if mcp else []
    return create_app(query, metrics or Metrics(), host=host, mounted=mounted)


def serve_stdio(config: Config, store: Store) -> None:
    """The MCP server over stdio (``envlabel mcp``), until the client closes it."""
    build_mcp(Query(config, store)).run("stdio")


def build_server(config: Config, store: Store, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 metrics: Metrics | None = None, *, log_level: str = "info") -> uvicorn.Server:
    """A uvicorn server for the API; raises EnvlabelError if it would listen beyond loopback without tokens."""
    app = build_app(config, store, host=host, metrics=metrics)
    # no proxy-headers middleware: nothing here reads the client address, and it runs on every request
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, access_log=False, server_header=False,
                                         proxy_headers=False, log_level=log_level, lifespan="on"))


def serve_app(config: Config, store: Store, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
              metrics: Metrics | None = None) -> None:
    """Serve the API in the foreground until interrupted (Ctrl-C, SIGTERM)."""
    build_server(config, store, host, port, metrics).run()


class BackgroundServer:
    """The API served from a daemon thread, for the demo and tests::

        with BackgroundServer(config, store, port=0) as server:
            httpx.get(f"{server.url}/v1/label", params={"target": ...})
    """

    def __init__(self, config: Config, store: Store, host: str = DEFAULT_HOST, port: int = 0,
                 metrics: Metrics | None = None) -> None:
        self.server = build_server(config, store, host, port, metrics, log_level="warning")
        self.host = host
        self._thread = threading.Thread(target=self.server.run, name="envlabel-api", daemon=True)

    @property
    def port(self) -> int:
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:  # readiness polling: uvicorn sets .started once its sockets listen
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise EnvlabelError(f"the API did not start on {self.host} within {timeout_s}s; is the port "
                                    "in use? (the log above says why)")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
