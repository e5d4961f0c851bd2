"""The embedded default: one SQLite file in WAL mode.

A store file is created only where no file is, and never seen half-made: it is built and migrated under a
temporary name beside it, then linked into place, so a process opening it at that moment finds the whole
store or none (:meth:`SQLiteDialect.create`). An existing file is opened read-write and never created or
re-created: connections open it with ``mode=rw``, and one that is empty, truncated or not SQLite is refused
before any connection touches it (:meth:`SQLiteDialect.refuse_unsound`), with a message saying what was found.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.request import pathname2url
from uuid import uuid4

from envlabel.errors import StoreError
from envlabel.store.failures import corrupt, failed

#: the first 16 bytes of every SQLite database file
HEADER = b"SQLite format 3\x00"
#: primary result codes (sqlite3.Error.sqlite_errorcode & 0xFF) of a damaged file
_CORRUPT = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB
_BUSY = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED
#: the disk or the file itself failed: I/O, full, read-only, cannot open, permission, out of memory, locking
_SYSTEM = frozenset({3, 7, 8, 10, 13, 14, 15, 22, 23})
_SQLITE_ERROR = 1
_IS_STORE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"


@dataclass(frozen=True)
class SQLiteDialect:
    path: str
    #: True only for a new store being built under its temporary name: connecting may create that file
    create_file: bool = False
    #: the name of the shared in-memory database of ``sqlite:///:memory:`` (every connection sees the one database)
    memory: str = ""
    name: str = "sqlite"
    serial: str = "INTEGER PRIMARY KEY"
    #: every write transaction starts by taking the write lock (waiting up to the busy timeout), so two
    #: processes opening or writing one file take turns instead of one failing (sqlite3 would begin
    #: only at the first DML, after a migration's reads and CREATE TABLEs)
    write_lock: str | None = "BEGIN IMMEDIATE"
    #: the page cache (KiB) while a scan commits: a million-resource estate's indexes then stay in memory
    #: instead of being re-read for every insert (~10% of a 1M commit); back to the default afterwards
    bulk_cache_kib: int | None = 262144
    #: no COPY in SQLite: executemany already costs a function call per row
    copy_rows: bool = False
    #: SQLite's planner uses the indexes without statistics
    analyze_sql: str | None = None
    #: SQLite serializes writers by itself; the write lock above also orders migrations
    migration_lock: str | None = None
    tables_sql: str = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' ESCAPE '!'"
    integrity_sql: str | None = "PRAGMA integrity_check"
    driver_error: type[Exception] = sqlite3.Error

    @classmethod
    def from_url(cls, url: str) -> SQLiteDialect:
        path = url.removeprefix("sqlite://")
        path = path.removeprefix("/")  # sqlite:///rel.db is relative, sqlite:////abs.db absolute
        if not path or path == "/":
            raise StoreError(f"store URL {url!r} names no file; write sqlite:////abs/path.db or sqlite:///rel.db")
        if path == ":memory:":
            return cls(path, memory=uuid4().hex)
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory of the store {path}: {exc}; "
                             "set store: sqlite:///A/WRITABLE/PATH.db") from exc
        return cls(path)

    @property
    def where(self) -> str:
        return f"the store {self.path}"

    @property
    def change_counter_sql(self) -> str | None:
        # data_version changes when another connection commits to the file; connections sharing an in-memory
        # database's cache are not told of each other's commits
        return None if self.memory else "PRAGMA data_version"

    def connect(self) -> sqlite3.Connection:
        if self.memory:
            target = f"file:envlabel-{self.memory}?mode=memory&cache=shared"
        else:  # mode=rw: a file that vanished is an error, never silently re-created empty
            target = f"file:{pathname2url(os.path.abspath(self.path))}?mode={'rwc' if self.create_file else 'rw'}"
        try:
            conn = sqlite3.connect(target, uri=True, timeout=30, check_same_thread=False, isolation_level="DEFERRED")
            # 8 KiB pages for a new file (an existing one keeps its own): a scan's inserts and its commit
            # cost 20-35% less in SQLite than with 4 KiB pages, and a label row with its evidence fits easily
            conn.execute("PRAGMA page_size=8192")
            # WAL is a property of the file: set it on a store being made and on an envlabel store that lacks it
            # (a restored copy), never on another database, whose bytes envlabel must not change
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal" and (
                    self.create_file or self.memory or conn.execute(_IS_STORE).fetchone() is not None):
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _CORRUPT:
                raise corrupt(self.where, str(exc)) from exc
            gone = "" if self.memory or os.path.lexists(self.path) else " (the file is gone: was it moved or deleted?)"
            raise StoreError(f"cannot open the SQLite store {self.path}: {exc}{gone}; check the path and its "
                             "permissions, or set store: to another file") from exc
        return conn

    def open_pool(self) -> None:
        """No pool: one writer connection, and a reader connection per thread."""

    def sql(self, statement: str) -> str:
        return statement

    def store_error(self, exc: Exception) -> StoreError | None:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is None:  # raised by the sqlite3 module itself (a closed connection, a wrong parameter count)
            return None
        primary = code & 0xFF
        text = str(exc)
        if primary in _CORRUPT or (primary == _SQLITE_ERROR and text.startswith(("no such table", "no such column"))):
            return corrupt(self.where, text)
        if primary in _BUSY:
            return failed(self.where, text, "another envlabel process has held its write lock for over 30 s (a large "
                                            "scan committing?); retry when it is done")
        if primary in _SYSTEM:
            return failed(self.where, text, "check the disk: free space, the file's permissions, and that the file "
                                            "is still there")
        return None  # a constraint, a statement or a value envlabel got wrong: a bug, reported as one

    # -- the file -----------------------------------------------------------------------------
    def exists(self) -> bool:
        """Something (even a dangling link) is at ``path``: the store there is opened, never created."""
        return bool(self.memory) or os.path.lexists(self.path)

    def is_empty_file(self) -> bool:
        """``path`` is a 0-byte file with no WAL data beside it: a store may be created in its place."""
        return _size(self.path) == 0 and not _size(f"{self.path}-wal")

    def refuse_unsound(self) -> None:
        """Raise a StoreError saying what was found when the existing file cannot be an intact SQLite
        database: empty, truncated, unreadable, a directory, or not SQLite. Reads the first 100 bytes only;
        the pages are checked as they are read (and all of them by ``envlabel store check``)."""
        if self.memory:
            return
        problem = self._problem()
        if problem is None:
            return
        if problem == "is empty (0 bytes)":
            raise StoreError(f"the store {self.path} {problem}; if it held labels, history or overrides, restore it "
                             "from a backup; to start a new, empty store here, run `envlabel store init`")
        raise StoreError(f"the store {self.path} {problem}; restore it from a backup, or point store: at another "
                         "file (envlabel never re-creates an existing file: to start over, move it away and run "
                         "`envlabel store init`)")

    def _problem(self) -> str | None:
        wal = _size(f"{self.path}-wal")
        try:
            if os.path.isdir(self.path):
                return "is a directory, not a store file"
            with open(self.path, "rb") as file:
                head = file.read(100)
                size = os.fstat(file.fileno()).st_size
        except OSError as exc:
            return f"cannot be read ({exc.strerror or exc})"
        if size == 0:
            return f"is empty (0 bytes) but its -wal file holds {wal} bytes (keep both files)" if wal else \
                "is empty (0 bytes)"
        return _header_problem(head, size, wal)

    def create(self, initialize: Callable[[SQLiteDialect], None], *, replace_empty: bool = False) -> bool:
        """Build a new store at ``path``: ``initialize`` migrates it under a temporary name beside it, which is
        then linked into place where no file is (or, ``replace_empty``, moved over an empty file). False:
        another process created the store first, and its store is kept."""
        final = Path(self.path)
        temp = final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.new")
        try:
            try:
                initialize(replace(self, path=str(temp), create_file=True))
                # the migration committed into the temporary file's WAL; fold it into the file that moves
                with closing(sqlite3.connect(temp)) as conn:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except (StoreError, sqlite3.Error) as exc:
                raise StoreError(f"cannot create the store {self.path}: {exc}; check that its directory is "
                                 "writable and has free space, or set store: to another file") from exc
            return _place(temp, final, replace_empty)
        finally:
            for suffix in ("", "-wal", "-shm"):
                with suppress(OSError):
                    os.unlink(f"{temp}{suffix}")


def _place(temp: Path, final: Path, replace_empty: bool) -> bool:
    if replace_empty:
        for suffix in ("-wal", "-shm"):  # an empty WAL and its index from the file's past, not of this store
            with suppress(FileNotFoundError):
                os.unlink(f"{final}{suffix}")
        os.replace(temp, final)
        return True
    try:
        os.link(temp, final)  # fails if anything is there: a store another process made meanwhile is kept
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links: rename, unless a store appeared meanwhile
        if os.path.lexists(final):
            return False
        os.rename(temp, final)
    return True


def _header_problem(head: bytes, size: int, wal: int) -> str | None:
    """What the first 100 bytes ``head`` of a ``size``-byte file show is wrong with it as SQLite (None: nothing)."""
    if not head.startswith(HEADER) or len(head) < 100:
        if HEADER.startswith(head) or head.startswith(HEADER):
            return f"is truncated ({size} bytes, shorter than a SQLite header)"
        return f"is not a SQLite database (it begins {head[:24]!r})"
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"has a damaged SQLite header (page size {page_size})"
    # the header's page count is valid when its version-valid-for equals its change counter; with WAL data
    # beside the file a checkpoint may be growing it right now, and the WAL holds the newest pages anyway
    pages = int.from_bytes(head[28:32], "big")
    if size % page_size or (not wal and head[92:96] == head[24:28] and size < pages * page_size):
        return f"is truncated ({size} bytes; its header says {pages} pages of {page_size} bytes)"
    return None


def _size(path: str) -> int:
    """The size of the file at ``path`` (0: none)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
