"""The PostgreSQL server of the test run (started by tests/services.py), one fresh schema per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest


def postgres_url() -> str:
    """``ENVLABEL_TEST_POSTGRES_URL``; without it the test skips, or fails under ``CI=true``."""
    url = os.environ.get("ENVLABEL_TEST_POSTGRES_URL")
    if url:
        return url
    why = ("ENVLABEL_TEST_POSTGRES_URL is not set: run the suite with `python3 dev.py test`, which starts "
           "PostgreSQL (tests/services.py up), or point it at a server of your own")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}; CI must test PostgreSQL")
    pytest.skip(why)


@contextmanager
def fresh_schema(base_url: str | None = None) -> Iterator[str]:
    """A store URL whose tables live in a new, empty schema (dropped afterwards): tests share one server."""
    import psycopg

    base = base_url or postgres_url()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
