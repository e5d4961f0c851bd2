"""A real headless Chromium (Debian's ``chromium``, driven by Playwright) and a real webhook receiver, for the
approval page's tests.

The browser is the distribution's (tests/services.py installs it), never one ``playwright install`` downloads.
Without it the browser tests skip, except under ``CI=true``, where they fail: CI must really drive the page.
The fixtures are in tests/browser_fixtures.py (``pytest_plugins = ["tests.browser_fixtures"]``).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from envlabel.config import Config
from envlabel.service.core.authority import Notify
from envlabel.service.daemon.webhooks import WebhookDispatcher, endpoints_from_config

CHROMIUM = Path("/usr/bin/chromium")
#: a one-time approval link as notifications carry it
LINK = re.compile(r"/approvals/(apr-[a-z0-9]+)\?key=([A-Za-z0-9_\-]+)")


def chromium_path() -> str:
    if CHROMIUM.exists():
        return str(CHROMIUM)
    why = (f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium; `python3 dev.py test` "
           "does it as root) to drive the approval page in a real browser")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}; CI must test the page in a browser")
    pytest.skip(why)


def eventually(condition: Callable[[], Any], what: str, deadline_s: float = 20.0) -> Any:
    """Wait for ``condition`` to hold (a delivery, a write), failing with ``what`` when it never does."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"never happened: {what}")


class Receiver:
    """A real HTTP server on loopback that keeps every JSON body POSTed to it (the webhook endpoint)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def approval_requested(self, approval_id: str) -> dict[str, Any]:
        """The approval_requested notification of ``approval_id``, once it has arrived."""
        body: dict[str, Any] = eventually(lambda: next((b for b in self.bodies if approval_id in json.dumps(b)), None),
                          f"the approval_requested webhook of {approval_id}")
        return body


@contextmanager
def webhooks(config: Config) -> Iterator[Notify]:
    """The daemon's webhook delivery for ``config.webhooks``: the ``notify`` a BackgroundServer sends approval
    events to (``envlabel serve`` builds the same)."""
    dispatcher = WebhookDispatcher(endpoints_from_config(config.webhooks), backoff=0.05).start()
    try:
        yield dispatcher.notifier()
    finally:
        dispatcher.stop(5)


def sign_in(page: Any, base: str, token: str) -> None:
    page.set_default_timeout(10_000)
    page.goto(f"{base}/approvals/login")
    page.fill("input[name=token]", token)
    page.click("button:has-text('Sign in')")


def decide(page: Any, decision: str, reason: str, name: str | None = None) -> None:
    """Fill the reason (and the name, where the page asks for one) and press Approve or Deny."""
    page.fill("textarea[name=reason]", reason)
    if name is not None:
        page.fill("input[name=name]", name)
    page.click(f"button[value={decision}]")
