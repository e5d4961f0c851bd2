"""PostgreSQL: one store shared by several replicas (``store: postgresql://USER:PASSWORD@HOST:PORT/DB``).

The SQL is the SQLite store's, unchanged: ``sql()`` turns its ``?`` placeholders into psycopg's ``%s``.
Connections come from a psycopg_pool ``ConnectionPool`` in autocommit mode, so a label lookup is one
round trip; a write transaction takes a pooled connection and turns autocommit off for its duration.
A pool (not one connection per thread) because uvicorn's worker threads come and go, and a connection that
broke (a restarted PostgreSQL, a failover) fails one call and is replaced, instead of failing every later one.

Migrations run under a transaction-level advisory lock, so replicas starting at once migrate one after
the other (the second finds the work done). Every write transaction takes another one, so writes from all
replicas happen one at a time, as with SQLite. Leader election's session
lock is :class:`envlabel.store.locks.AdvisoryLock`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from envlabel.config import redact_url as redact
from envlabel.errors import StoreError
from envlabel.store.failures import corrupt, failed

#: connections per process unless config ``store_pool_size`` says otherwise; a replica's API threads share them
DEFAULT_POOL_SIZE = 10
#: the lock every migration takes; any constant key works, this one is "envlabel" in ASCII
MIGRATION_LOCK_KEY = 0x656E766C6162656C
_PLACEHOLDER = re.compile(r"\?")
#: SQLSTATEs of damaged data (data_corrupted, index_corrupted) and of envlabel's tables gone missing
_CORRUPT = frozenset({"XX001", "XX002"})
_DAMAGED_SCHEMA = frozenset({"42P01", "42703"})  # undefined_table, undefined_column
#: SQLSTATE classes of a server that cannot serve now: connection, resources, operator intervention, system
_SERVER_TROUBLE = frozenset({"08", "53", "57", "58"})


@dataclass(frozen=True)
class PostgresDialect:
    url: str
    pool_size: int = DEFAULT_POOL_SIZE
    name: str = "postgresql"
    serial: str = "BIGSERIAL PRIMARY KEY"
    #: taken inside the migration transaction; released by its commit
    migration_lock: str | None = f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
    #: taken by every write transaction (one writer at a time per store, as with SQLite); keyed by the schema
    write_lock: str | None = "SELECT pg_advisory_xact_lock(hashtextextended('envlabel-writer:' || current_schema(), 0))"
    bulk_cache_kib: int | None = None
    #: scans write their rows with COPY (a staging table and one merge for upserts): Transaction.insert_rows
    copy_rows: bool = True
    #: ANALYZE counts and samples the transaction's own new rows, so the reads after a large write use its indexes
    analyze_sql: str | None = "ANALYZE {table}"
    #: the tables of the schema the store's tables go in (the first of the connection's search_path)
    tables_sql: str = "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
    integrity_sql: str | None = None  # no built-in page check (amcheck is an extension): a full read instead
    #: no change counter short of a read of the server: answers are never kept (Query.label)
    change_counter_sql: str | None = None
    driver_error: type[Exception] = psycopg.Error
    _translated: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_url(cls, url: str, pool_size: int = DEFAULT_POOL_SIZE) -> PostgresDialect:
        if url.startswith("postgres://"):  # libpq accepts both; keep one spelling in messages
            url = "postgresql://" + url.removeprefix("postgres://")
        if not urlsplit(url).path.strip("/"):
            raise StoreError(f"store URL {redact(url)!r} names no database; write postgresql://USER@HOST:PORT/DB")
        return cls(url, pool_size)

    def connect(self) -> psycopg.Connection[Any]:
        """One connection of its own (leader election holds its session lock on one)."""
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise self.unreachable(exc) from exc

    def open_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            # no check on checkout (it would cost a round trip per lookup): a connection that broke while idle
            # (server restart, failover) fails one call, and the pool replaces it when it comes back
            self.url, min_size=1, max_size=self.pool_size, kwargs={"autocommit": True, "connect_timeout": 10},
            open=False, name="envlabel-store")
        try:
            pool.open(wait=True, timeout=15)
        except Exception as exc:  # psycopg_pool.PoolTimeout: the first connection failed
            pool.close()
            raise self.unreachable(exc) from exc
        return pool

    def unreachable(self, exc: BaseException) -> StoreError:
        return StoreError(f"cannot connect to the PostgreSQL store {redact(self.url)}: {exc}; check that the "
                          "server is up, the URL (host, port, database) and the credentials")

    @property
    def where(self) -> str:
        return f"the PostgreSQL store {redact(self.url)}"

    def store_error(self, exc: Exception) -> StoreError | None:
        state = getattr(exc, "sqlstate", None) or ""
        if state in _CORRUPT or state in _DAMAGED_SCHEMA:
            return corrupt(self.where, str(exc).strip())
        if isinstance(exc, psycopg.OperationalError) or state[:2] in _SERVER_TROUBLE:
            return failed(self.where, str(exc).strip(), "check that the server is up and reachable, and its logs")
        return None  # a constraint, a statement or a value envlabel got wrong: a bug, reported as one

    def sql(self, statement: str) -> str:
        # statements are a fixed set; translating each once keeps the lookup path free of regex work
        translated = self._translated.get(statement)
        if translated is None:
            translated = _PLACEHOLDER.sub("%s", statement.replace("%", "%%"))
            if len(self._translated) < 10_000:  # IN (?, ?, ...) lists vary in length; bound the memo
                self._translated[statement] = translated
        return translated
