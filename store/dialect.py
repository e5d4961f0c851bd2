"""What a database supplies to the one SQL store: connections, its SQL spelling, its locks and tuning.

Every capability is declared here, with the value that means "not offered" (``None``), so the store
reads attributes instead of probing a dialect for what it might have.
"""

from __future__ import annotations

from typing import Any, Protocol

from envlabel.errors import StoreError


class Dialect(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def serial(self) -> str:
        """The column type of an auto-numbered primary key."""
    @property
    def write_lock(self) -> str | None:
        """A statement every write transaction runs first, so writers across processes take turns."""
    @property
    def migration_lock(self) -> str | None:
        """A statement the migration transaction runs first (replicas starting at once migrate in turn)."""
    @property
    def bulk_cache_kib(self) -> int | None:
        """The page cache while a scan commits (SQLite ``PRAGMA cache_size``), or None to leave it."""
    @property
    def copy_rows(self) -> bool:
        """Whether many rows are written with ``COPY`` (PostgreSQL: one statement per batch, where a statement per
        row costs a parse, a plan and a round trip's share of server work); False: executemany (SQLite, where a
        row is a function call)."""
    @property
    def analyze_sql(self) -> str | None:
        """A statement refreshing the planner's statistics of ``{table}`` inside the write transaction, run after
        a bulk write (PostgreSQL ``ANALYZE``: a first commit otherwise reads back its million rows with plans made
        for the empty table), or None: not needed (SQLite plans its reads by its indexes without statistics)."""
    @property
    def where(self) -> str:
        """The store as error messages name it (``the store /var/lib/envlabel/envlabel.db``; no password)."""
    @property
    def tables_sql(self) -> str:
        """A query answering the name of every table in the store's database (its schema, for PostgreSQL)."""
    @property
    def integrity_sql(self) -> str | None:
        """A statement checking every page (SQLite ``PRAGMA integrity_check``), or None: read every row instead."""
    @property
    def change_counter_sql(self) -> str | None:
        """A statement answering, on a reader connection, a number that differs once any other connection has
        committed (SQLite ``PRAGMA data_version``: one call into the library, no page read), or None: no such
        counter this cheap (PostgreSQL; an in-memory SQLite store, whose shared-cache connections are not told)."""
    @property
    def driver_error(self) -> type[Exception]:
        """The base class of the driver's errors (``sqlite3.Error``, ``psycopg.Error``)."""

    def store_error(self, exc: Exception) -> StoreError | None:
        """A driver error as a StoreError that says what broke and what to do (a CorruptStore when the data
        is damaged), or None when it is envlabel's own mistake (a constraint, a bad statement)."""

    def connect(self) -> Any:
        """A connection of its own (readers, the writer, a leader's session lock)."""
    def open_pool(self) -> Any | None:
        """A pool that serves reads and writes (PostgreSQL), or None: one writer and a reader per thread."""
    def sql(self, statement: str) -> str:
        """``statement`` (written with ``?`` placeholders) as this database spells it."""
