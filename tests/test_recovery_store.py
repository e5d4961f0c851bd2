"""Recovery facts in the store, on a real SQLite file and a real PostgreSQL: stored with the resource, part of its
digest (a changed fact is written, an unchanged one is not), versioned in fact_history, and shown in the label JSON
(``facts``, ``{}`` when none) and in the label as it stood (``get --at``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from envlabel.config import config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanResult
from envlabel.service.core.history import label_at
from envlabel.service.core.pipeline import ScanSummary, commit_changes, commit_scan
from envlabel.service.core.query import Query
from envlabel.store import open_store
from envlabel.store.codec import digest, encode_tags
from envlabel.store.schema import MIGRATIONS, TABLES
from envlabel.store.sql import Store
from tests.estates import DB, T0, aws_estate, scan_of
from tests.postgres_db import fresh_schema

HOUR = timedelta(hours=1)
CONFIG = config_from_dict({})
TAX = Taxonomy.from_config(CONFIG)
NO_BACKUPS = {"deletion_protection": False, "backup_retention_days": 0, "latest_snapshot": None,
              "read_replica_of": None, "cluster": None}
SNAPSHOT = {"id": "orders-pre-migration", "at": "2026-03-01T01:00:00Z", "kind": "manual"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        opened = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
        yield opened
        opened.close()
        return
    with fresh_schema() as url:
        opened = open_store(url)
        yield opened
        opened.close()


def estate(db_facts: dict[str, object]) -> list[Resource]:
    return [replace(r, facts=db_facts) if r.id == DB else r for r in aws_estate()]


def scan(store: Store, resources: list[Resource], at: object) -> ScanSummary:
    result: ScanResult = scan_of(resources)
    return commit_scan(store, TAX, result, at, at)  # type: ignore[arg-type]


def test_facts_are_stored_and_shown_in_the_label_json(store: Store) -> None:
    scan(store, estate(NO_BACKUPS), T0)
    query = Query(CONFIG, store)
    assert query.label(DB, now=T0)["facts"] == NO_BACKUPS
    stored = store.get(DB)
    assert stored is not None and dict(stored.resource.facts) == NO_BACKUPS
    # a resource without facts, and a target never seen, show {} (the key is always there)
    assert query.label("222222222222", now=T0)["facts"] == {}
    assert query.label("arn:aws:rds:us-east-1:222222222222:db:never", now=T0)["facts"] == {}
    assert query.labels([DB], now=T0)[0]["facts"] == NO_BACKUPS
    assert store.schema_version == len(MIGRATIONS) >= 6 and "fact_history" in TABLES


def test_a_changed_fact_changes_the_digest_and_is_written(store: Store) -> None:
    first = scan(store, estate(NO_BACKUPS), T0)
    assert first.written == 5
    assert scan(store, estate(NO_BACKUPS), T0 + HOUR).written == 0  # nothing changed: nothing rewritten
    with_snapshot = {**NO_BACKUPS, "latest_snapshot": SNAPSHOT}
    again = scan(store, estate(with_snapshot), T0 + 2 * HOUR)
    assert again.written == 1
    assert Query(CONFIG, store).label(DB, now=T0 + 2 * HOUR)["facts"]["latest_snapshot"] == SNAPSHOT


def test_a_resource_without_facts_keeps_the_digest_it_had_before_facts_were_stored() -> None:
    """An upgrade does not rewrite every factless resource: its digest is the one the previous release stored."""
    db = aws_estate()[-1]
    head = repr((db.provider, db.kind, db.name, db.parent, db.scope, db.region, db.path, db.name_signal,
                 db.declared, db.aliases))
    before_facts = hashlib.blake2b((head + encode_tags(db.tags)).encode(), digest_size=12).hexdigest()
    assert digest(db) == before_facts
    assert digest(replace(db, facts={"deletion_protection": True})) != before_facts
    assert digest(replace(db, facts={"deletion_protection": True})) != digest(replace(db, facts={
        "deletion_protection": False}))


def test_fact_history_has_a_row_per_change_of_facts(store: Store) -> None:
    scan(store, estate(NO_BACKUPS), T0)
    scan(store, estate(NO_BACKUPS), T0 + HOUR)
    scan(store, estate({**NO_BACKUPS, "latest_snapshot": SNAPSHOT}), T0 + 2 * HOUR)
    history = store.fact_history(DB)
    assert [(at, facts["latest_snapshot"]) for at, _, facts in history] == [(T0, None), (T0 + 2 * HOUR, SNAPSHOT)]
    assert all(scan_id is not None for _, scan_id, _ in history)
    assert store.fact_history("222222222222") == []  # no facts, no history
    # the label as it stood shows the facts that stood then
    query = Query(CONFIG, store)
    assert label_at(query, DB, T0 + HOUR)["facts"] == NO_BACKUPS
    assert label_at(query, DB, T0 + 3 * HOUR)["facts"]["latest_snapshot"] == SNAPSHOT


def test_a_watch_event_stores_and_versions_facts(store: Store) -> None:
    scan(store, estate(NO_BACKUPS), T0)
    db = next(r for r in estate({**NO_BACKUPS, "deletion_protection": True}) if r.id == DB)
    commit_changes(store, TAX, "aws", [db], now=T0 + HOUR)
    assert Query(CONFIG, store).label(DB, now=T0 + HOUR)["facts"]["deletion_protection"] is True
    history = store.fact_history(DB)
    assert [(at, scan_id, facts["deletion_protection"]) for at, scan_id, facts in history] == [
        (T0, history[0][1], False), (T0 + HOUR, None, True)]


def test_facts_that_are_not_json_are_refused_with_what_to_do(store: Store) -> None:
    broken = replace(aws_estate()[-1], facts={"latest_snapshot": object()})
    with pytest.raises(ValueError, match="recovery facts must be JSON"):
        scan(store, [*aws_estate()[:-1], broken], T0)
    assert store.get(DB) is None  # nothing of the failed commit was written
