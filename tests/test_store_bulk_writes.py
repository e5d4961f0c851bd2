"""Bulk writes: on PostgreSQL a scan's rows go in by COPY (upserts through a staging table), on SQLite by executemany;
the two must store the same rows.

Each scan here writes more than ``STAGE_AT_LEAST`` rows to every table it touches, so every PostgreSQL write takes
the COPY and staged paths (the contract tests' small estates take executemany on both backends). The same scans
go into a real SQLite file and a real PostgreSQL schema, and every table is compared row for row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from envlabel.config import config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanResult
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.store import open_store
from envlabel.store.sql import Store
from envlabel.store.transaction import MAY_STAGE, STAGE_AT_LEAST
from tests.estates import T0
from tests.postgres_db import fresh_schema, postgres_url

pytestmark = pytest.mark.postgres

HOUR = timedelta(hours=1)
CONFIG = config_from_dict({})
TAX = Taxonomy.from_config(CONFIG)
ACCOUNT = "333333333333"
SCOPE = f"{ACCOUNT}/eu-west-1"
N = STAGE_AT_LEAST + 200
#: every column of every table a scan writes, serial ids left out (each backend numbers its own rows)
TABLES = {
    "resources": "id, source, provider, kind, name, parent, scope, region, path, tags, name_signal, declared, "
                 "aliases, digest, first_seen, updated_at, tombstoned_at, facts, stem",
    "labels": "target, environment, decided_by, conflict, evidence, valid_until, labeled_at, scan_id",
    "label_history": "target, at, scan_id, event, before, environment, decided_by, conflict, evidence, valid_until",
    "fact_history": "target, at, scan_id, facts",
    "aliases": "alias, target",
    "scopes": "source, scope, last_ok",
    "scans": "id, source, started_at, finished_at, complete, resources, changed, removed, errors",
}
#: text COPY's own syntax: a column break, a row break, an escape, its NULL and its end-of-data marker. A scanned
#: name or tag holding them must be stored as data, never shift a value into another column or become a NULL
COPY_SYNTAX = "a\tb\nc\\N\\.\r\\"
#: a production database whose name and tags are made of COPY syntax (a value crafted to read as sandbox)
TRICKY = f"arn:aws:rds:eu-west-1:{ACCOUNT}:db:tricky"


def bucket(i: int, env: str, *, facts: dict[str, Any] | None = None) -> Resource:
    """Bucket ``i``, tagged (and named) ``env``, with an alias of its own (two buckets claim the alias ``shared``)."""
    aliases = (f"alias-{i}", "shared") if i in (3, N - 3) else (f"alias-{i}",)
    return Resource(f"arn:aws:s3:::orders-{i:05d}", "aws", "s3:bucket", f"orders-{env}-{i:05d}", ACCOUNT,
                    {"env": env, "team": f"t{i % 7}"}, SCOPE, "eu-west-1", aliases=aliases,
                    facts=facts if facts is not None else {"versioning": i % 2 == 0})


def estate(env: str, *, missing: range = range(0), versioned: bool = False) -> list[Resource]:
    """An account holding ``N`` buckets tagged ``env`` (but those in ``missing``) and the tricky database."""
    account = Resource(ACCOUNT, "aws", "aws:account", "orders", None, {"env": "staging"}, "org")
    tricky = Resource(TRICKY, "aws", "rds:db", f"orders-{COPY_SYNTAX}", ACCOUNT,
                      {"env": "prod", f"owner{COPY_SYNTAX}": f"sandbox{COPY_SYNTAX}", "empty": ""}, SCOPE,
                      "eu-west-1", declared=None, facts={"note": COPY_SYNTAX})
    buckets = [bucket(i, env, facts={"versioning": True} if versioned else None) for i in range(N) if i not in missing]
    return [account, tricky, *buckets]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """(a real SQLite file, a real PostgreSQL schema), both empty."""
    with fresh_schema() as url:
        sqlite, postgres = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}"), open_store(url)
        try:
            yield sqlite, postgres
        finally:
            sqlite.close()
            postgres.close()


def scan_both(stores: tuple[Store, Store], resources: list[Resource], at: Any) -> None:
    for store in stores:
        result = ScanResult("aws", resources, [], frozenset({SCOPE, "org"}))
        commit_scan(store, TAX, result, at, at)


def rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every table a scan writes, each row as a tuple, in one order on both backends (sorted here: the two sort
    NULLs apart)."""
    return {table: sorted((tuple(r) for r in store._query(f"SELECT {columns} FROM {table}")), key=repr)
            for table, columns in TABLES.items()}


def stage_tables(store: Store) -> int:
    """Staging tables any session of the server still has."""
    return int(store._query("SELECT COUNT(*) FROM pg_class WHERE relname LIKE 'envlabel_stage_%'")[0][0])


def test_copied_and_staged_rows_equal_sqlites_through_new_changed_gone_and_back(stores: tuple[Store, Store]) -> None:
    sqlite, postgres = stores
    scan_both(stores, estate("dev"), T0)  # all new: COPY on PostgreSQL, labels staged
    first = rows(postgres)
    assert first == rows(sqlite)
    assert len(first["resources"]) == len(first["labels"]) == len(first["label_history"]) == N + 2
    assert dict(first["aliases"])["shared"] == f"arn:aws:s3:::orders-{N - 3:05d}"  # the later claim wins
    scan_both(stores, estate("prod", missing=range(100, 150), versioned=True), T0 + HOUR)  # changed, 50 gone
    second = rows(postgres)
    assert second == rows(sqlite)
    events = [r[3] for r in second["label_history"]]
    # every bucket seen again was relabeled; the account and the database kept their labels
    assert events.count("gone") == 50 and events.count("label") == (N + 2) + (N - 50)
    assert sum(r[16] is not None for r in second["resources"]) == 50
    assert len(second["fact_history"]) > len(first["fact_history"]) + STAGE_AT_LEAST // 2
    scan_both(stores, estate("prod", versioned=True), T0 + 2 * HOUR)  # the 50 come back, unlabeled, then labeled
    third = rows(postgres)
    assert third == rows(sqlite)
    assert all(r[16] is None for r in third["resources"])
    assert stage_tables(postgres) == 0  # dropped with their transactions


def test_copy_syntax_in_scanned_values_is_data_and_the_production_database_stays_production(
        stores: tuple[Store, Store]) -> None:
    """A name, tag key or value holding text COPY's tab, newline, ``\\N`` or ``\\.`` cannot break a row apart
    into other columns (an environment, a NULL): the production database is stored and labeled as such."""
    scan_both(stores, estate("dev"), T0)
    for store in stores:
        stored = store.get(TRICKY)
        assert stored is not None
        assert stored.resource.name == f"orders-{COPY_SYNTAX}"
        assert dict(stored.resource.tags) == {"env": "prod", f"owner{COPY_SYNTAX}": f"sandbox{COPY_SYNTAX}",
                                              "empty": ""}
        assert stored.resource.facts == {"note": COPY_SYNTAX}
        body = Query(CONFIG, store).label(TRICKY, now=T0)
        assert body["environment"] == "production" and body["decided_by"] == "tag"


def test_a_rolled_back_staging_leaves_nothing_and_the_next_commit_stages_again(stores: tuple[Store, Store]) -> None:
    _, postgres = stores
    scan_both(stores, estate("dev"), T0)
    before = rows(postgres)
    upserts = [(f"alias-{i}", f"arn:aws:s3:::elsewhere-{i}") for i in range(STAGE_AT_LEAST)]
    with pytest.raises(KeyboardInterrupt), postgres.transaction() as tx:
        tx.upsert_rows("aliases", ("alias", "target"), "alias", upserts)
        assert tx.execute("SELECT COUNT(*) FROM aliases WHERE target LIKE 'arn:aws:s3:::elsewhere-%'"
                          ).fetchone()[0] == STAGE_AT_LEAST
        assert tx.execute("SELECT COUNT(*) FROM pg_class WHERE relname = 'envlabel_stage_aliases'").fetchone()[0] == 1
        raise KeyboardInterrupt  # the process dies after staging, before the commit
    assert rows(postgres) == before
    assert stage_tables(postgres) == 0
    scan_both(stores, estate("prod"), T0 + HOUR)  # the same pooled connections stage again
    assert rows(postgres) == rows(stores[0])


@contextmanager
def role_without_temporary_tables() -> Iterator[str]:
    """A store URL for a new role (not a superuser: those may do anything) in a new database that revoked
    TEMPORARY from PUBLIC, as a locked-down production database may; dropped afterwards."""
    import psycopg

    base = postgres_url()
    name = f"notemp_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'")
        admin.execute(f"REVOKE TEMPORARY ON DATABASE {name} FROM PUBLIC")
        admin.execute(f"CREATE ROLE {name} LOGIN")
    parts = urlsplit(base)
    try:
        with psycopg.connect(urlunsplit(parts._replace(path=f"/{name}")), autocommit=True) as owner:
            owner.execute(f"CREATE SCHEMA AUTHORIZATION {name}")  # its search_path finds the schema named after it
        yield urlunsplit(parts._replace(netloc=f"{name}@{parts.hostname}:{parts.port}", path=f"/{name}"))
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {name}")


def test_a_role_that_may_not_create_temporary_tables_still_commits_large_changes(tmp_path: Path) -> None:
    """Without TEMPORARY a staged upsert would abort the whole commit: the store upserts row by row instead."""
    with role_without_temporary_tables() as url:
        stores = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}"), open_store(url)
        try:
            assert stores[1]._query(MAY_STAGE)[0][0] is False
            scan_both(stores, estate("dev"), T0)
            scan_both(stores, estate("prod", versioned=True), T0 + HOUR)  # every bucket changed: a large upsert
            assert rows(stores[1]) == rows(stores[0])
            assert {r[1] for r in rows(stores[1])["labels"] if r[0].startswith("arn:aws:s3:::")} == {"production"}
        finally:
            for store in stores:
                store.close()
