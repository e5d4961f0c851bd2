"""Label history, `get --at` and staleness, through the real CLI on a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from envlabel.config import load_config
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import ScanError, ScanResult
from envlabel.service.core.history import history_json, label_at
from envlabel.service.core.overrides import set_override
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.store import open_store
from tests.estates import ACCOUNT, DB, SCOPE, T0, aws_estate, cli, scan_of, write_config

HOUR = timedelta(hours=1)


def iso(moment: object) -> str:
    return moment.isoformat().replace("+00:00", "Z")  # type: ignore[attr-defined]


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path, stale_after="24h")


@pytest.fixture
def query(config_path: Path) -> Iterator[Query]:
    config = load_config(config_path, environ={})
    store = open_store(config.store)
    yield Query(config, store)
    store.close()


def scan(query: Query, resources: list[object], at: object, errors: list[ScanError] | None = None,
         scopes: frozenset[str] | None = None) -> None:
    result = ScanResult("aws", resources, errors or [],  # type: ignore[arg-type]
                        scopes if scopes is not None else scan_of(resources).scopes)  # type: ignore[arg-type]
    commit_scan(query.store, query.taxonomy, result, at, at)  # type: ignore[arg-type]


@pytest.fixture
def changing(query: Query) -> Query:
    """The database: sandbox (own tag, no OU) at T0, staging at T0+1h, gone at T0+2h."""
    def estate(db_env: str, with_db: bool = True) -> list[object]:
        return [r for r in aws_estate(account_env="sandbox", db_tags={"env": db_env}, with_db=with_db)
                if r.kind != "aws:ou"]
    scan(query, estate("dev"), T0)
    scan(query, estate("stg"), T0 + HOUR)
    scan(query, estate("stg", with_db=False), T0 + 2 * HOUR)
    return query


def test_history_lists_every_change_newest_last(changing: Query, config_path: Path) -> None:
    result = cli(config_path, "history", DB, "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["event"], r["before"], r["environment"], r["at"]) for r in rows] == [
        ("label", None, "sandbox", "2026-03-01T00:00:00.000000Z"),
        ("label", "sandbox", "staging", "2026-03-01T01:00:00.000000Z"),
        ("gone", "staging", "staging", "2026-03-01T02:00:00.000000Z"),
    ]
    assert rows[1]["evidence"][0]["detail"] == "tag env=stg on rds:db orders"
    assert all(isinstance(r["scan_id"], int) for r in rows)
    text = cli(config_path, "history", DB).stdout.splitlines()
    assert text[0].startswith("2026-03-01T00:00:00.000000Z  label    (none) -> sandbox")
    assert text[-1].startswith("2026-03-01T02:00:00.000000Z  gone     staging")


def test_get_at_answers_as_of_that_time(changing: Query, config_path: Path) -> None:
    def at(moment: object) -> tuple[int, dict[str, object]]:
        result = cli(config_path, "get", DB, "--json", "--at", iso(moment))
        return result.exit_code, json.loads(result.stdout)

    code, body = at(T0 - HOUR)  # before the first label
    assert (code, body["found"], body["environment"]) == (3, False, "unknown")
    code, body = at(T0 + HOUR / 2)
    assert (code, body["found"], body["environment"], body["decided_by"]) == (0, True, "sandbox", "tag")
    code, body = at(T0 + HOUR)
    assert (code, body["environment"]) == (0, "staging")
    code, body = at(T0 + 3 * HOUR)  # tombstoned then
    assert (code, body["found"], body["gone_at"], body["kind"]) == (3, False, "2026-03-01T02:00:00.000000Z",
                                                                     "rds:db")
    assert cli(config_path, "get", DB).exit_code == 3  # and now


def test_get_at_rejects_a_bad_time_and_target(config_path: Path) -> None:
    bad_time = cli(config_path, "get", DB, "--at", "yesterday")
    assert bad_time.exit_code == 2 and "2026-01-31T12:00:00Z" in bad_time.stderr
    bad_target = cli(config_path, "history", "orders-db")
    assert bad_target.exit_code == 2 and "accepted target forms" in bad_target.stderr
    never = cli(config_path, "history", DB)
    assert never.exit_code == 3 and "never seen" in never.stdout


def test_a_returning_resource_is_a_new_history_event(changing: Query) -> None:
    estate = [r for r in aws_estate(account_env="sandbox", db_tags={"env": "stg"}) if r.kind != "aws:ou"]
    scan(changing, estate, T0 + 3 * HOUR)
    events = [(r["event"], r["before"], r["environment"]) for r in history_json(changing, DB)]
    assert events[-2:] == [("gone", "staging", "staging"), ("label", None, "staging")]
    assert changing.label(DB, now=T0 + 3 * HOUR)["found"] is True
    assert label_at(changing, DB, T0 + 3 * HOUR)["environment"] == "staging"
    assert label_at(changing, DB, T0 + 2.5 * HOUR)["found"] is False


def test_get_at_after_an_override_expired(query: Query) -> None:
    scan(query, aws_estate(), T0)  # production through the OU
    set_override(query, ACCOUNT, "sandbox", reason="lab", author="a", expires_at=T0 + HOUR, now=T0 + HOUR / 4)
    assert label_at(query, DB, T0 + HOUR / 2)["environment"] == "sandbox"
    # lapsed but not yet persisted: the label without the override
    lapsed = label_at(query, DB, T0 + 2 * HOUR)
    assert (lapsed["environment"], lapsed["observed_at"]) == ("production", "2026-03-01T01:00:00.000000Z")
    scan(query, aws_estate(), T0 + 3 * HOUR)  # persists it
    assert [r["environment"] for r in history_json(query, DB)] == ["production", "sandbox", "production"]
    assert label_at(query, DB, T0 + 2 * HOUR)["environment"] == "production"
    assert label_at(query, DB, T0 + HOUR / 2)["environment"] == "sandbox"


def test_failing_scans_make_labels_stale_not_gone(query: Query, config_path: Path) -> None:
    scan(query, aws_estate(), T0)
    failed = [ScanError(SCOPE, "AccessDenied: not authorized to perform rds:DescribeDBInstances")]
    org_only = [r for r in aws_estate() if r.scope == "org"]
    for hours in (12, 25):  # the organization still answers; the account's region keeps failing
        scan(query, org_only, T0 + hours * HOUR, failed, frozenset({"org"}))
    fresh = query.label(DB, now=T0 + 23 * HOUR)
    assert (fresh["stale"], fresh["authoritative"]) == (False, True)
    stale = query.label(DB, now=T0 + 25 * HOUR)
    assert (stale["found"], stale["environment"], stale["stale"], stale["authoritative"]) == (
        True, "production", True, False)
    assert stale["observed_at"] == "2026-03-01T00:00:00.000000Z"
    account = query.label(ACCOUNT, now=T0 + 25 * HOUR)  # its scope was scanned fine
    assert (account["stale"], account["authoritative"]) == (False, True)
    # a scan that failed outright (the scanner raised) removes nothing either
    scan(query, [], T0 + 26 * HOUR, [ScanError("aws", "EndpointConnectionError")], frozenset())
    assert query.label(DB, now=T0 + 26 * HOUR)["found"] is True
    assert query.label(ACCOUNT, now=T0 + 26 * HOUR)["stale"] is False  # 25h scan of "org" is 1h old
    rows = json.loads(cli(config_path, "list", "--json").stdout)  # wall clock: long after T0, all stale
    assert {r["target"]: r["stale"] for r in rows}[DB] is True


def test_complete_scans_keep_labels_fresh_without_declared_scopes(query: Query) -> None:
    for day in range(3):
        scan(query, aws_estate(), T0 + day * 24 * HOUR, scopes=frozenset())
    label = query.label(DB, now=T0 + 2 * 24 * HOUR + HOUR)
    assert (label["stale"], label["observed_at"]) == (False, "2026-03-03T00:00:00.000000Z")


def test_stale_after_is_configurable(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, stale_after="30m"), environ={})
    store = open_store(config.store)
    commit_scan(store, Taxonomy.from_config(config), scan_of(aws_estate()), T0, T0)
    query = Query(config, store)
    assert query.label(DB, now=T0 + timedelta(minutes=30))["stale"] is False
    assert query.label(DB, now=T0 + timedelta(minutes=31))["stale"] is True
    store.close()
