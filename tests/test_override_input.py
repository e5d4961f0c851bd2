"""Override input an attacker or a slip of the keyboard may send: invisible reasons and authors, terminal
escapes, overflowing expiries. Through the real HTTP server (uvicorn on a free port, httpx) and the real
CLI, on real SQLite stores; after each refusal the production database is still production, with no override.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from envlabel.config import config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.service.core.errors import InvalidOverride
from envlabel.service.core.overrides import MAX_EXPIRY, parse_expiry
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.api_estate import PROD_DB, populate
from tests.estates import DB, T0, aws_estate, cli, scan_of, write_config

FAR = "too far ahead: at most 3650d ahead; leave --expires out for an override that does not expire"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Store]]:
    """The API on loopback without tokens (every local caller is admin) over a populated store."""
    path = tmp_path_factory.mktemp("overrides") / "envlabel.db"
    store = open_store(f"sqlite:///{path}")
    populate(store)
    config = config_from_dict({"store": f"sqlite:///{path}"})
    with BackgroundServer(config, store) as server, httpx.Client(base_url=server.url) as client:
        yield client, store
    store.close()


def assert_production_untouched(client: httpx.Client, store: Store) -> None:
    label = client.get("/v1/label", params={"target": PROD_DB}).json()
    assert (label["found"], label["environment"], label["decided_by"]) == (True, "production", "inherited")
    assert store.overrides() == {}
    assert client.get("/v1/overrides", params={"all": "true"}).json()["events"] == []


@pytest.mark.parametrize(("body", "message"), [
    ({"reason": "\x07"}, "the reason (--reason) contains the control character U+0007"),
    ({"reason": "\u200b"}, "the reason (--reason) has no visible characters"),
    ({"reason": "\u200b\u2060\ufeff\u00ad"}, "has no visible characters"),
    ({"reason": " \u3000 "}, "an override needs a reason"),
    ({"reason": "ok\x1b[2J\x1b[Hall clear"}, "contains the control character U+001B"),
    ({"reason": "x" * 1001}, "the reason (--reason) is 1001 characters long; keep it to at most 1000"),
    ({"reason": "fine", "author": "\u200b"}, "the author (--by) has no visible characters"),
    ({"reason": "fine", "author": "eve\nalice"}, "the author (--by) contains the control character U+000A"),
    ({"reason": "fine", "expires": "99999999999d"}, f"--expires '99999999999d' is {FAR}"),
    ({"reason": "fine", "expires": "3651d"}, f"--expires '3651d' is {FAR}"),
    ({"reason": "fine", "expires": "9999-12-31T23:59:59Z"}, FAR),
    ({"reason": "fine", "expires": "9999-12-31T23:59:59-05:00"}, FAR),
    ({"reason": "fine", "expires": "0001-01-01T00:00:00+14:00"}, "is not in the future"),
])
def test_the_api_refuses_bad_override_input_and_changes_nothing(served: tuple[httpx.Client, Store],
                                                                 body: dict[str, Any], message: str) -> None:
    """The attack: mark the production database sandbox with an override nobody can read or that never ends."""
    client, store = served
    response = client.post("/v1/overrides", json={"target": PROD_DB, "environment": "sandbox", **body})
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error"] == "invalid override" and message in answer["message"], answer
    assert_production_untouched(client, store)


def test_a_readable_reason_over_lines_and_the_longest_expiry_are_accepted(served: tuple[httpx.Client, Store]) -> None:
    client, store = served
    response = client.post("/v1/overrides", json={"target": PROD_DB, "environment": "production",
                                                  "reason": "  migration window\n\tticket OPS-1  ",
                                                  "author": "alice", "expires": "3650d"})
    assert response.status_code == 200, response.text
    assert response.json()["override"]["reason"] == "migration window\n\tticket OPS-1"
    removed = client.delete("/v1/overrides", params={"target": PROD_DB, "reason": "\u200b", "author": "alice"})
    assert removed.status_code == 400 and "no visible characters" in removed.json()["message"]
    assert client.delete("/v1/overrides", params={"target": PROD_DB, "author": "alice"}).status_code == 200
    assert store.overrides() == {}


@pytest.mark.parametrize(("args", "message"), [
    (["--reason", "\u200b", "--by", "alice"], "the reason (--reason) has no visible characters"),
    (["--reason", "why", "--by", "\x1b[31m"], "the author (--by) contains the control character U+001B"),
    (["--reason", "why", "--by", "alice", "--expires", "99999999999d"], FAR),
    (["--reason", "why", "--by", "alice", "--expires", "9999-12-31T23:59:59Z"], FAR),
])
def test_the_cli_refuses_bad_override_input_with_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    config = write_config(tmp_path)
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    commit_scan(store, Taxonomy(), scan_of(aws_estate()), T0, T0)
    result = cli(config, "override", "set", DB, "sandbox", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert store.overrides() == {}
    store.close()


@pytest.mark.parametrize("value", ["99999999999d", "9" * 30 + "ms", "9999-12-31T23:59:59-23:59",
                                   "0001-01-01T00:00:00+23:59", "3651d", "+999999-01-01", "nonsense"])
def test_parse_expiry_raises_only_invalid_override(value: str) -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    try:
        moment = parse_expiry(value, now)
    except InvalidOverride:
        return
    assert moment - now <= MAX_EXPIRY  # what it accepts is within the bound
    assert moment - now > -timedelta(days=365 * 3000)
