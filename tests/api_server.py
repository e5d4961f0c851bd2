"""The real envlabel HTTP API (uvicorn) on a free loopback port, in a background thread, for SDK tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from envlabel.config import Config
from service.api import create_app
from store.sql import Store
from tests.conftest import free_port


@contextmanager
def serve_api(config: Config, store: Store) -> Iterator[str]:
    """Serve ``create_app(config, store)`` until the block ends; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config, store), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="envlabel-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # readiness, not timing
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the envlabel API did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
