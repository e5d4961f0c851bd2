"""What a database supplies to the one SQL store: connections, its SQL spelling, its locks and tuning.

Every capability is declared here, with the value that means "not offered" (``None``), so the store
reads attributes instead of probing a dialect for what it might have.
"""

from __future__ import annotations

from typing import Any, Protocol


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

    def connect(self) -> Any:
        """A connection of its own (readers, the writer, a leader's session lock)."""
    def open_pool(self) -> Any | None:
        """A pool that serves reads and writes (PostgreSQL), or None: one writer and a reader per thread."""
    def sql(self, statement: str) -> str:
        """``statement`` (written with ``?`` placeholders) as this database spells it."""
