"""One SQL store over a DB-API connection; the dialect (SQLite, PostgreSQL) supplies connections.

A scan commits in one transaction (``Store.transaction``): resources,
tombstones, scope times, the scan record and every label change land
together or not at all, so a process killed mid-scan leaves the previous
state intact.

Every read and write turns the driver's errors into a StoreError that says what broke and what to do
(the dialect's ``store_error``); a :class:`~envlabel.store.failures.CorruptStore` also marks the store
broken, so every later call refuses with it. Opening reads the schema version and the first row of every
table (:meth:`Store.probe`); :meth:`Store.verify` reads every page (``envlabel store check``).
"""

from __future__ import annotations

import itertools
import json
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from itertools import islice
from typing import Any, Literal, NoReturn, TypeVar

from envlabel.errors import StoreError
from envlabel.model import Override, Resource
from envlabel.store.approvals import ApprovalsRows
from envlabel.store.codec import decode_facts, parse_ts, ts
from envlabel.store.decisions import DecisionsRows
from envlabel.store.dialect import Dialect
from envlabel.store.failures import CorruptStore, corrupt, not_a_store
from envlabel.store.lookalikes import LookalikesRows
from envlabel.store.outbox import OutboxRows
from envlabel.store.records import AuditRow, HistoryEntry, LabelView, PastLabel, StoredLabel
from envlabel.store.rows import (
    HISTORY,
    PAST,
    RESOURCE,
    STORED,
    VIEW,
    VIEW_ONE,
    history_entry_of,
    label_view_of,
    resolution_of,
    resource_of,
)
from envlabel.store.schema import MIGRATIONS, TABLES, VERSION_TABLE
from envlabel.store.transaction import Transaction

T = TypeVar("T")
#: when opening may create envlabel's tables: never (an existing SQLite file), in a database with no tables at
#: all (a SQLite file being created, or `envlabel store init`), or beside other tables (a PostgreSQL schema)
Create = Literal["never", "empty", "beside"]
#: the audit reads every live resource in table order: SQLite would otherwise walk a partial index on live rows
#: (resources_stem) and fetch each row by its rowid, a third more time for the whole audit of a million rows
_TABLE_ORDER = {"sqlite": " NOT INDEXED"}


class Store(DecisionsRows, ApprovalsRows, LookalikesRows, OutboxRows):
    """Reads anywhere, writes inside :meth:`transaction` (one writer at a time). The decision log, approvals and
    lookalikes have their rows in mixins of their own (store/decisions.py, approvals.py, lookalikes.py)."""

    def __init__(self, dialect: Dialect, *, create: Create = "never") -> None:
        self.dialect = dialect
        self._create = create
        #: True when this opening created envlabel's tables
        self.created = False
        #: the CorruptStore this store raised, after which it refuses every call
        self._broken: CorruptStore | None = None
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._openings = itertools.count()
        # PostgreSQL: a pool serves reads and writes (autocommit; a transaction turns it off while it runs).
        # SQLite: one writer connection and a reader connection per thread.
        self._pool: Any = dialect.open_pool()
        self._writer: Any = None
        try:
            self._writer = dialect.connect() if self._pool is None else None
            self._migrate()
        except BaseException:
            self.close()
            raise

    # -- plumbing -----------------------------------------------------------------------------
    def _reader(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.dialect.connect()
            self._local.conn = conn
            self._local.opened = next(self._openings)  # which connection: see change_counter
        return conn

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        if self._pool is None:
            yield self._reader()
            return
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _writing(self) -> Iterator[Any]:
        if self._pool is None:
            yield self._writer
            return
        with self._pool.connection() as conn:
            conn.autocommit = False
            try:
                yield conn
            finally:
                if not conn.closed:
                    conn.autocommit = True

    def _query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._broken is not None:
            self._refuse()
        try:
            with self._reading() as conn:  # no cursor in a local: see _fail
                rows: list[Any] = conn.execute(self.dialect.sql(statement), params).fetchall()
        except self.dialect.driver_error as exc:
            self._fail(exc)
        return rows

    def _fail(self, exc: Exception) -> NoReturn:
        """Raise the driver's error ``exc`` as the StoreError that says what to do (a bug's error as itself)."""
        # a cursor left in a finished frame of the traceback keeps its SQLite connection open after close() (and
        # its -wal and -shm files beside the store after the process exits); only the variables are dropped
        traceback.clear_frames(exc.__traceback__)
        error = self.dialect.store_error(exc)
        if error is None:
            raise exc
        if isinstance(error, CorruptStore):
            self._broken = error
        raise error from exc

    def _refuse(self) -> NoReturn:
        assert self._broken is not None
        raise CorruptStore(str(self._broken))  # a new one each time: threads raising one object share a traceback

    def _migrate(self) -> None:
        with self.transaction() as tx:
            # replicas starting at once migrate one after the other (PostgreSQL: an advisory lock; SQLite
            # serializes writers by itself)
            if self.dialect.migration_lock:
                tx.execute(self.dialect.migration_lock)
            tables = self._tables(tx)
            current = self._version(tx, tables)
            for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in script.format(serial=self.dialect.serial).split(";"):
                    if statement.strip():
                        tx.execute(statement)
                tx.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (?)", (version,))
            if current < len(MIGRATIONS):
                tables = self._tables(tx)
            if missing := sorted(TABLES - tables):
                raise corrupt(self.dialect.where, f"its tables {', '.join(missing)} are missing")
            for table in sorted(tables & (TABLES | {VERSION_TABLE})):  # the probe, in the migration's transaction
                tx.execute(f"SELECT * FROM {table} LIMIT 1").fetchall()

    def _tables(self, tx: Transaction) -> set[str]:
        return {str(row[0]) for row in tx.execute(self.dialect.tables_sql).fetchall()}

    def _version(self, tx: Transaction, tables: set[str]) -> int:
        """The schema version of the store (0: new), creating the version table where ``create`` allows;
        raises a StoreError for a database that is not an envlabel store, or not one this release can open."""
        where = self.dialect.where
        ours = ", ".join(sorted(tables & TABLES))
        if VERSION_TABLE not in tables:
            if ours:
                raise corrupt(where, f"it has envlabel's tables ({ours}) but no {VERSION_TABLE} table")
            if self._create == "never" or (self._create == "empty" and tables):
                raise not_a_store(where, tables)
            tx.execute(f"CREATE TABLE {VERSION_TABLE} (version INTEGER NOT NULL)")
            self.created = True
            return 0
        current = int(tx.execute(f"SELECT MAX(version) FROM {VERSION_TABLE}").fetchone()[0] or 0)
        if current > len(MIGRATIONS):
            raise StoreError(f"{where} is at schema version {current}, newer than this envlabel ({len(MIGRATIONS)}): "
                             "a newer release migrated it; upgrade envlabel (an older one must not write to it)")
        if current == 0 and ours:
            raise corrupt(where, f"its {VERSION_TABLE} table is empty but it has envlabel's tables ({ours})")
        self.created = current == 0
        return current

    def probe(self) -> None:
        """Raise a StoreError unless the store answers: its schema version and the first row of every table
        (cheap; ``/readyz`` runs it). A deeper corruption is found by the read that meets it, or by :meth:`verify`."""
        for table in sorted(TABLES | {VERSION_TABLE}):
            self._query(f"SELECT * FROM {table} LIMIT 1")

    def verify(self) -> list[str]:
        """Every problem a full check finds (empty: none): the dialect's check of every page (SQLite's
        integrity check), else a read of every row. Reads the whole store: minutes for millions of resources."""
        self.probe()
        if self.dialect.integrity_sql:
            return [str(row[0]) for row in self._query(self.dialect.integrity_sql) if str(row[0]) != "ok"]
        for table in sorted(TABLES | {VERSION_TABLE}):
            self._query(f"SELECT * FROM {table}")
        return []

    @property
    def schema_version(self) -> int:
        return int(self._query(f"SELECT MAX(version) FROM {VERSION_TABLE}")[0][0])

    @contextmanager
    def transaction(self, bulk: bool = False) -> Iterator[Transaction]:
        """The one write transaction. ``bulk``: a scan's commit, for which the dialect may tune the connection."""
        if self._broken is not None:
            self._refuse()
        try:
            with self._write_lock, self._writing() as conn, self._tuned(conn, bulk):
                try:
                    tx = Transaction(conn, self.dialect)
                    # one writer at a time across processes too (the dialect's write_lock: SQLite BEGIN IMMEDIATE,
                    # PostgreSQL a transaction-level advisory lock), so a scan's relabel never interleaves with an
                    # override set by another process (READ COMMITTED alone would let one overwrite the other)
                    if self.dialect.write_lock:
                        tx.execute(self.dialect.write_lock)
                    yield tx
                    conn.commit()
                except BaseException:
                    with suppress(Exception):  # a broken connection cannot roll back; the error that broke it says why
                        conn.rollback()
                    raise
        except self.dialect.driver_error as exc:
            self._fail(exc)

    @contextmanager
    def _tuned(self, conn: Any, bulk: bool) -> Iterator[None]:
        size = self.dialect.bulk_cache_kib if bulk else None
        if not size:
            yield
            return
        previous = conn.execute("PRAGMA cache_size").fetchone()[0]
        conn.execute(f"PRAGMA cache_size=-{int(size)}")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA cache_size={int(previous)}")  # a smaller cache frees the pages above it

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._writer is not None:
            self._writer.close()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- reads --------------------------------------------------------------------------------
    def resolve_id(self, target: str) -> str:
        """The stored id for ``target`` (itself, or the resource it is an alias of)."""
        rows = self._query("SELECT target FROM aliases WHERE alias = ?", (target,))
        return str(rows[0][0]) if rows else target

    def get(self, target: str) -> StoredLabel | None:
        rows = self._query(f"{STORED} WHERE r.id = ?", (target,))
        if not rows:
            alias = self.resolve_id(target)
            if alias == target:
                return None
            return self.get(alias)
        return self._stored(rows[0])

    def get_many(self, targets: Sequence[str]) -> dict[str, StoredLabel]:
        """:meth:`get` for many targets, one read per 500, keyed by the id asked for (aliases resolved);
        targets never seen are absent."""
        return self._read_many(targets, STORED, self._stored, self.get)

    def label_view(self, target: str) -> LabelView | None:
        """What the label JSON of ``target`` shows (aliases resolved), in one indexed read; None if never seen."""
        row = self._first(VIEW_ONE, (target,))
        if row is None:
            alias = self.resolve_id(target)
            return None if alias == target else self.label_view(alias)
        return label_view_of(row)

    def change_counter(self) -> tuple[int, int] | None:
        """A value that differs after anything was committed to the store since it was last asked on this
        thread (by this process's writer or another process): (which reader connection, its ``data_version``);
        None when the store has no counter this cheap (PostgreSQL, an in-memory store) or cannot answer (a broken
        store: the read that follows says why). Whoever keeps answers read from the store keeps them only while
        it is unchanged (Query.label)."""
        statement = self.dialect.change_counter_sql
        if statement is None or self._pool is not None or self._broken is not None:
            return None
        try:
            version = int(self._reader().execute(statement).fetchone()[0])
        except self.dialect.driver_error:
            return None
        return self._local.opened, version

    def _first(self, statement: str, params: Sequence[Any]) -> Any:
        """The first row of a lookup (None: no row)."""
        rows = self._lookup(statement, params)
        return rows[0] if rows else None

    def _lookup(self, statement: str, params: Sequence[Any]) -> list[Any]:
        """A point read by key, the hot path agents call before every action. SQLite: on this thread's
        reader connection without the pool's context manager (a sixth of a warm lookup)."""
        if self._pool is not None:
            return self._query(statement, params)
        if self._broken is not None:
            self._refuse()
        try:  # free when nothing raises
            rows: list[Any] = self._reader().execute(self.dialect.sql(statement), params).fetchall()
        except self.dialect.driver_error as exc:
            self._fail(exc)
        return rows

    def label_views(self, targets: Sequence[str]) -> dict[str, LabelView]:
        """:meth:`label_view` for many targets, one read per 500, keyed by the id asked for (aliases
        resolved); targets never seen are absent."""
        return self._read_many(targets, VIEW, label_view_of, self.label_view)

    def subtree_environments(self, root: str) -> list[tuple[str, str, int]]:
        """The environments of the live resources below ``root`` (not ``root`` itself), as
        ``(environment, the first id by id so labeled, how many)``; one not labeled yet counts as ``unknown``.

        One read: a walk down the parent index joined to the labels' primary key (the check's ``contents``)."""
        rows = self._query(
            "WITH RECURSIVE below(id) AS (SELECT id FROM resources WHERE parent = ? AND tombstoned_at IS NULL "
            "UNION SELECT r.id FROM resources r JOIN below b ON r.parent = b.id WHERE r.tombstoned_at IS NULL) "
            "SELECT COALESCE(l.environment, 'unknown'), MIN(b.id), COUNT(*) FROM below b "
            "LEFT JOIN labels l ON l.target = b.id GROUP BY COALESCE(l.environment, 'unknown')", (root,))
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def _read_many(self, targets: Sequence[str], select: str, decode: Callable[[Sequence[Any]], T],
                   read_one: Callable[[str], T | None]) -> dict[str, T]:
        wanted = list(dict.fromkeys(targets))
        found: dict[str, T] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            rows = self._lookup(f"{select} WHERE r.id IN ({', '.join('?' * len(chunk))})", chunk)
            found.update((row[0], decode(row)) for row in rows)
        for target in wanted:
            if target not in found and (item := read_one(target)) is not None:  # an alias
                found[target] = item
        return found

    def _stored(self, row: Sequence[Any]) -> StoredLabel:
        observed = parse_ts(row[21]) or parse_ts(row[19])
        assert observed is not None
        return StoredLabel(resource_of(row, facts=decode_facts(row[22])), row[18], resolution_of(row[12:18]),
                           parse_ts(row[17]), observed, parse_ts(row[20]))

    def list_labels(self, environment: str | None = None, provider: str | None = None, after: str = "",
             limit: int | None = None, include_gone: bool = False) -> list[StoredLabel]:
        clauses = ["r.id > ?"]
        params: list[Any] = [after]
        if not include_gone:
            clauses.append("r.tombstoned_at IS NULL")
        if environment:
            clauses.append("l.environment = ?")
            params.append(environment)
        if provider:
            clauses.append("r.provider = ?")
            params.append(provider)
        limit_sql = ""
        if limit is not None:
            limit_sql = " LIMIT ?"
            params.append(limit)
        rows = self._query(
            f"{STORED} WHERE {' AND '.join(clauses)} ORDER BY r.id{limit_sql}", params)
        return [self._stored(row) for row in rows]

    def history(self, target: str) -> list[HistoryEntry]:
        """Every label change of ``target``, oldest first."""
        rows = self._query(f"SELECT {HISTORY} FROM label_history WHERE target = ? ORDER BY at, id",
                           (self.resolve_id(target),))
        return [history_entry_of(r) for r in rows]

    def fact_history(self, target: str) -> list[tuple[datetime, int | None, dict[str, Any]]]:
        """Every change of ``target``'s recovery facts as ``(at, scan id, facts)``, oldest first."""
        rows = self._query("SELECT at, scan_id, facts FROM fact_history WHERE target = ? ORDER BY at, id",
                           (self.resolve_id(target),))
        return [(at, r[1], decode_facts(r[2])) for r in rows if (at := parse_ts(r[0])) is not None]

    def label_at(self, target: str, at: datetime) -> HistoryEntry | None:
        """The last history entry of ``target`` at or before ``at``."""
        past = self.past_label(target, at)
        return past.entry if past else None

    def past_label(self, target: str, at: datetime) -> PastLabel | None:
        """The last history entry of ``target`` at or before ``at`` with what the label JSON shows of the
        resource, in one indexed read (aliases resolved only when the id itself has no entry)."""
        moment = ts(at)
        rows = self._lookup(PAST, (moment, target, moment))
        if not rows:
            alias = self.resolve_id(target)
            return None if alias == target else self.past_label(alias, at)
        r = rows[0]
        return PastLabel(history_entry_of(r), r[10], r[11], r[12], r[13], r[14], decode_facts(r[15]))

    def next_history(self, past: PastLabel) -> HistoryEntry | None:
        """The history entry of the same target right after ``past`` (None: it is the last)."""
        at = ts(past.entry.at)
        rows = self._query(f"SELECT {HISTORY} FROM label_history WHERE target = ? AND (at > ? OR (at = ? AND id > ?)) "
                           "ORDER BY at, id LIMIT 1", (past.entry.target, at, at, past.row))
        return history_entry_of(rows[0]) if rows else None

    def history_mark(self) -> int:
        """The id of the newest history entry (0 for none): where a reader of later changes starts."""
        return int(self._query("SELECT COALESCE(MAX(id), 0) FROM label_history")[0][0])

    def history_since(self, after: int, upto: int, limit: int) -> tuple[int, list[HistoryEntry]]:
        """(entries written in ``(after, upto]``, the first ``limit`` of them that changed a label's environment)."""
        span = (after, upto)
        count = int(self._query("SELECT COUNT(*) FROM label_history WHERE id > ? AND id <= ?", span)[0][0])
        rows = self._query(f"SELECT {HISTORY} FROM label_history WHERE id > ? AND id <= ? AND event = 'label' "
                           "AND before IS NOT NULL AND before <> environment ORDER BY id LIMIT ?", (*span, limit))
        return count, [history_entry_of(r) for r in rows]

    def overrides(self) -> dict[str, Override]:
        rows = self._query("SELECT target, environment, reason, author, created_at, expires_at FROM overrides")
        return {r[0]: Override(r[0], r[1], r[2], r[3], parse_ts(r[4]) or datetime.min, parse_ts(r[5]))
                for r in rows}

    def override_events(self, target: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE target = ?", (target,)) if target else ("", ())
        rows = self._query("SELECT target, action, environment, reason, author, at, expires_at "
                           f"FROM override_events {where} ORDER BY at, id", params)
        keys = ("target", "action", "environment", "reason", "author", "at", "expires_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def last_scans(self) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT s.source, s.id, s.started_at, s.finished_at, s.complete, s.resources, s.changed, s.removed, "
            "s.errors FROM scans s WHERE s.id IN (SELECT MAX(id) FROM scans GROUP BY source) ORDER BY s.source")
        keys = ("source", "id", "started_at", "finished_at", "complete", "resources", "changed", "removed")
        return [dict(zip(keys, r[:8], strict=True)) | {"complete": bool(r[4]), "errors": json.loads(r[8])}
                for r in rows]

    def environment_counts(self, source: str) -> dict[str, int]:
        """Live resources of ``source`` per environment."""
        rows = self._query(
            "SELECT COALESCE(l.environment, 'unknown'), COUNT(*) FROM resources r LEFT JOIN labels l "
            "ON l.target = r.id WHERE r.source = ? AND r.tombstoned_at IS NULL GROUP BY 1", (source,))
        return {r[0]: int(r[1]) for r in rows}

    # -- audit reads (streamed: an estate of millions never sits in memory at once) ----------------
    def containers(self) -> dict[str, Resource]:
        """Every resource that is, or was, some resource's parent: a superset of the live containers
        (one with only gone children is harmless to a reader), read off the parent index alone."""
        return {row[0]: resource_of(row) for row in self._query(
            f"SELECT {RESOURCE} FROM resources r WHERE r.id IN (SELECT DISTINCT parent FROM resources "
            "WHERE parent IS NOT NULL)")}

    def iter_for_audit(self, tag_keys: Iterable[str], batch: int = 20000
                       ) -> Iterator[list[tuple[AuditRow, str, str]]]:
        """Live resources as ``(row, source, observed)``, ``batch`` at a time, for the audit.

        ``row.tags`` holds only the tags whose key is one of ``tag_keys`` (case ignored): the audit
        reads nothing else, and not parsing the rest is most of its speed. ``observed`` is the TS_FORMAT
        text of the last complete scan of the resource's scope (else of its last change).
        """
        keys = frozenset(k.lower() for k in tag_keys)
        needles = tuple(f'"{k}":' for k in keys)
        last_ok: dict[str, dict[str, str]] = {}  # per source, per scope: a lookup without a key tuple per row
        for source, scope, at in self._query("SELECT source, scope, last_ok FROM scopes"):
            last_ok.setdefault(source, {})[scope] = at
        try:
            yield from self._audit_batches(keys, needles, last_ok, batch)
        except self.dialect.driver_error as exc:
            self._fail(exc)

    def _audit_batches(self, keys: frozenset[str], needles: tuple[str, ...], last_ok: dict[str, dict[str, str]],
                       batch: int) -> Iterator[list[tuple[AuditRow, str, str]]]:
        parsed: dict[str, dict[str, str]] = {}
        with self._reading() as conn:
            cur = conn.cursor()
            # facts are '{}' on almost every row: NULL costs the driver no string
            cur.execute(self.dialect.sql(
                "SELECT r.id, r.provider, r.kind, r.name, r.parent, r.tags, r.scope, r.region, r.name_signal, "
                "r.declared, r.path, r.source, r.updated_at, NULLIF(r.facts, '{}') "
                f"FROM resources r{_TABLE_ORDER.get(self.dialect.name, '')} WHERE r.tombstoned_at IS NULL"))
            # a million rows: unpacked in the loop header, rows built by tuple.__new__ (the named tuple's own
            # __new__ is a Python function), name_signal compared rather than bool()-called: ~0.5 s of 4
            new_row = tuple.__new__
            no_facts: dict[str, Any] = {}  # shared by every row without facts (the audit only reads them)
            no_scopes: dict[str, str] = {}
            # each row read off the cursor as it is decoded, not a batch of them fetched into a list first: a
            # million rows, and a fetched batch no longer fits the processor's caches (a quarter of the stream)
            while True:
                out: list[tuple[AuditRow, str, str]] = []
                append = out.append
                for (rid, provider, kind, name, parent, text, scope, region, signal, declared, path, source, at,
                     facts) in islice(cur, batch):
                    tags = parsed.get(text)
                    if tags is None:
                        lowered = text.lower()
                        tags = {k: v for k, v in json.loads(text).items() if k.lower() in keys} \
                            if any(n in lowered for n in needles) else {}
                        if len(parsed) > 100_000:  # tag sets repeat across an estate; bound the memo all the same
                            parsed.clear()
                        parsed[text] = tags
                    append((new_row(AuditRow, (rid, provider, kind, name, parent, tags, scope, region, signal == 1,
                                               declared, path, decode_facts(facts) if facts else no_facts)),
                            source, last_ok.get(source, no_scopes).get(scope) or at))
                if not out:
                    return
                yield out

    def counts(self) -> dict[tuple[str, str], int]:
        """Live resources per (provider, environment)."""
        rows = self._query(
            "SELECT r.provider, COALESCE(l.environment, 'unknown'), COUNT(*) FROM resources r "
            "LEFT JOIN labels l ON l.target = r.id WHERE r.tombstoned_at IS NULL GROUP BY 1, 2")
        return {(r[0], r[1]): int(r[2]) for r in rows}

