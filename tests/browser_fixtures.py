"""The ``browser`` (headless Chromium) and ``receiver`` (webhook endpoint) fixtures of tests/browser.py; a test module
takes them with ``pytest_plugins = ["tests.browser_fixtures"]``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import Receiver, chromium_path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module; each test opens its own context (cookies of its own)."""
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium's sandbox refuses to run as root
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=args, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    hook.thread.start()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()
