"""The write side of the store: everything a scan, a watch event, an override or a relabel writes,
inside one :meth:`envlabel.store.sql.Store.transaction`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

from envlabel.model import UNKNOWN, Override, Resolution, Resource, ScanError
from envlabel.store.codec import decode_tags, digest, encode_aliases, encode_facts, encode_tags, parse_ts, ts
from envlabel.store.dialect import Dialect
from envlabel.store.lookalikes import StemFunction, keep_label_environments
from envlabel.store.records import EncodedLabel, Fence, FencedOut, LabelChange
from envlabel.store.rows import CONTAINERS, LABEL, RESOURCE, RESOURCE_COLUMNS, resolution_of, resource_of

#: an upsert of at least this many rows is staged (copied into a temporary table, then merged by one statement) where
#: the dialect copies rows: below it, executemany costs less than making the table, and a watch event's handful of
#: rows leaves no temporary table behind in the catalog
STAGE_AT_LEAST = 1000
#: whether the role may stage (PostgreSQL; only asked where the dialect copies rows)
MAY_STAGE = "SELECT has_database_privilege(current_database(), 'TEMPORARY')"
#: an upsert of resources writing at least this many rows refreshes the planner's statistics of the table (the
#: dialect's ``analyze_sql``): a few hundred milliseconds, against the minutes a first commit's reads would take
#: with plans made for the empty table (every batch of the relabel re-reading and sorting the rest of the table)
ANALYZE_AT_LEAST = 20_000
#: the columns of a stored resource, in the order :meth:`Transaction.upsert_resources` builds its rows
STORED_RESOURCE = (*RESOURCE_COLUMNS.split(", "), "stem")
#: a resource labeled as it is stored (:meth:`Transaction.upsert_resources` with ``label``): its label's environment too
LABELED_RESOURCE = (*STORED_RESOURCE, "label_environment")
#: what a resource observed again replaces: everything but its id and when it was first seen; it is live again
RESOURCE_UPDATE = ", ".join(f"{c} = excluded.{c}" if c != "tombstoned_at" else "tombstoned_at = NULL"
                            for c in STORED_RESOURCE if c not in ("id", "first_seen"))
LABEL_COLUMNS = ("target", "environment", "decided_by", "conflict", "evidence", "valid_until", "labeled_at", "scan_id")
HISTORY_COLUMNS = ("target", "at", "scan_id", "event", "before", "environment", "decided_by", "conflict", "evidence",
                   "valid_until")
#: the history rows of the labels inserted after rowid ``?``: each a target's first label (SQLite)
FIRST_HISTORY = (f"INSERT INTO label_history ({', '.join(HISTORY_COLUMNS)}) SELECT target, labeled_at, scan_id, "
                 "'label', NULL, environment, decided_by, conflict, evidence, valid_until FROM labels WHERE rowid > ? "
                 "ORDER BY rowid")
#: SQLite's page cache (KiB) while a large first commit loads an empty store (a scan's commit has 256 MiB otherwise):
#: its own bookkeeping (every id it saw) takes the memory a larger cache would, and the cache's last quarter saves
#: little (1M resources: peak RSS 454 MiB instead of 525, CPU time within noise)
FIRST_LOAD_CACHE_KIB = 196608


class LabelingRow(NamedTuple):
    """A live resource as a relabel reads it: :class:`Resource`'s fields but the facts (``aliases`` as stored)."""

    id: str
    provider: str
    kind: str
    name: str
    parent: str | None
    tags: Mapping[str, str]
    scope: str
    region: str
    name_signal: bool
    declared: str | None
    aliases: str
    path: str

    def resource(self) -> Resource:
        return resource_of(self, self.tags)


class Transaction:
    """The write side, valid inside ``Store.transaction()``."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect
        #: the staging tables made in this transaction (each is dropped when it ends), and whether it may make them
        self._staged: set[str] = set()
        self._can_stage: bool | None = None
        #: the store held no resource when :meth:`first_load` began: the next upsert reads nothing back
        self._empty = False

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        cur = self.conn.cursor()
        cur.execute(self.dialect.sql(statement), params)
        return cur

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        cur = self.conn.cursor()
        cur.executemany(self.dialect.sql(statement), rows)

    # -- many rows at once: COPY where the dialect copies rows (PostgreSQL), else executemany ------------
    def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert ``rows`` (values in ``columns``' order) into ``table``, none of them stored yet.

        PostgreSQL: one COPY, instead of one statement per row (each a parse, a plan and a round trip's share
        of server work: a 1,000,000-resource first commit writes three million rows). SQLite: executemany, where
        a row is a function call."""
        if not rows:
            return
        if self.dialect.copy_rows:
            self._copy(table, columns, rows)
            return
        self.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows)

    def upsert_rows(self, table: str, columns: Sequence[str], key: str, rows: Sequence[Sequence[Any]],
                    update: str | None = None) -> None:
        """Insert ``rows`` into ``table``; a row whose ``key`` is stored replaces it with ``update`` (an ON CONFLICT
        SET list; default: every other column). Of two rows with one key the later wins, as with executemany.

        PostgreSQL, from :data:`STAGE_AT_LEAST` rows: a COPY into a temporary table shaped like ``table``, then one
        ``INSERT ... SELECT ... ON CONFLICT`` (a statement may not update a row twice: the later row alone is
        copied). Fewer rows, SQLite, and a PostgreSQL role that may not create temporary tables: executemany."""
        if not rows:
            return
        names = ", ".join(columns)
        sets = update or ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
        conflict = f"ON CONFLICT ({key}) DO UPDATE SET {sets}"
        if not self.dialect.copy_rows or len(rows) < STAGE_AT_LEAST or not self._may_stage():
            self.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))}) {conflict}", rows)
            return
        at = list(columns).index(key)
        stage = self._stage(table)
        self._copy(stage, columns, list({row[at]: row for row in rows}.values()))
        self.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} {conflict}")
        self.execute(f"TRUNCATE {stage}")

    def _may_stage(self) -> bool:
        """Whether the store's role may create temporary tables (asked once per transaction): a database can
        revoke TEMPORARY from PUBLIC, and a failed CREATE would abort the whole commit."""
        if self._can_stage is None:
            self._can_stage = bool(self.execute(MAY_STAGE).fetchone()[0])
        return self._can_stage

    def _stage(self, table: str) -> str:
        """The staging table of ``table`` in this transaction, made on first use; dropped when it commits or rolls
        back (ON COMMIT DROP; a rollback undoes its creation), so no pooled connection keeps one."""
        stage = f"pg_temp.envlabel_stage_{table}"
        if stage not in self._staged:
            self.execute(f"CREATE TEMPORARY TABLE {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
            self._staged.add(stage)
        return stage

    def _copy(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Stream ``rows`` into ``table`` with COPY (psycopg formats and escapes each row in C: a tab, a newline, a
        backslash or ``\\N`` in a value is data, never a column break or a NULL)."""
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    @contextmanager
    def first_load(self, large: bool = True) -> Iterator[bool]:
        """Yields whether this is a ``large`` write into a store holding no resource at all (a first commit): then
        nothing stored needs reading back (the next :meth:`upsert_resources` reads no stored facts; the caller
        tombstones nothing, and what it relabels is what it wrote), and on SQLite the page cache is
        :data:`FIRST_LOAD_CACHE_KIB` inside the block. Decided under the write lock: no other writer adds a
        resource meanwhile."""
        if not large or self.execute("SELECT 1 FROM resources LIMIT 1").fetchone() is not None:
            yield False
            return
        self._empty = True
        if self.dialect.name != "sqlite":
            yield True
            return
        previous = self.execute("PRAGMA cache_size").fetchone()[0]
        self.execute(f"PRAGMA cache_size=-{FIRST_LOAD_CACHE_KIB}")
        try:
            yield True
        finally:
            self.execute(f"PRAGMA cache_size={int(previous)}")

    # -- observations -------------------------------------------------------------------------
    def live_ids(self, source: str, kind: str | None = None) -> set[str]:
        """The ids of ``source``'s live resources (of one ``kind``: what a relist of that kind replaces)."""
        if kind is None:
            rows = self.execute("SELECT id FROM resources WHERE source = ? AND tombstoned_at IS NULL", (source,))
        else:
            rows = self.execute("SELECT id FROM resources WHERE source = ? AND kind = ? AND tombstoned_at IS NULL",
                                (source, kind))
        return {r[0] for r in rows.fetchall()}

    def active_overrides(self, now: datetime) -> dict[str, Override]:
        """The overrides in force at ``now``, by target, read inside this transaction."""
        rows = self.execute("SELECT target, environment, reason, author, created_at, expires_at FROM overrides")
        overrides = (Override(r[0], r[1], r[2], r[3], parse_ts(r[4]) or now, parse_ts(r[5])) for r in rows.fetchall())
        return {o.target: o for o in overrides if o.active(now)}

    def upsert_resources(self, source: str, resources: Iterable[Resource], now: datetime,
                         batch: int = 5000, *, stem: StemFunction, scan_id: int | None = None,
                         label: Callable[[Resource], EncodedLabel | None] | None = None) -> tuple[set[str], int]:
        """Insert new and changed resources, each with its lookalike ``stem`` (of its name: the pipeline passes
        the taxonomy's, having made the stored stems its own with :func:`envlabel.store.lookalikes.restem`).
        A resource whose recovery facts differ from the stored ones gets a ``fact_history`` row (of ``scan_id``).

        ``label``, in a :meth:`first_load` only, labels each resource as it is stored: a label it gives is stored
        with the row (its first label, a history row, the environment on the resource), so the relabel after it
        has only the resources it gave None for (their label is not known yet) to read back. Elsewhere it is not
        called. Returns (ids seen, rows written)."""
        stamp = ts(now)
        seen: set[str] = set()
        written = 0
        pending: list[tuple[Any, ...]] = []
        aliases: list[tuple[str, str]] = []
        few = resources if isinstance(resources, Sequence) and len(resources) <= 500 else None
        if few is None:
            existing = dict(self.execute(
                "SELECT id, digest FROM resources WHERE source = ? AND tombstoned_at IS NULL", (source,)).fetchall())
        else:  # a watch event upserts a handful: read their digests, not the whole source's
            existing = dict(self.execute(
                f"SELECT id, digest FROM resources WHERE source = ? AND tombstoned_at IS NULL AND id IN "
                f"({', '.join('?' * len(few))})", (source, *(r.id for r in few))).fetchall()) if few else {}

        # into a store that held no resource, every row is new: nothing stored to compare facts with or revive
        empty, self._empty = self._empty, False
        if not empty:
            label = None
        labels: list[tuple[str, EncodedLabel]] = []

        def flush() -> None:
            if label is not None:  # a first load labeled as it streams: every row is new, each with its environment
                self._insert_labeled(pending, aliases, labels, now, scan_id)
            else:
                self._store_resources(pending, aliases, {} if empty else self.stored_facts([r[0] for r in pending]),
                                      stamp, scan_id)
            pending.clear()
            aliases.clear()
            labels.clear()

        for r in resources:
            if r.id in seen:
                continue
            seen.add(r.id)
            tags = encode_tags(r.tags)
            facts = encode_facts(r.facts) if r.facts else "{}"
            fingerprint = digest(r, tags, facts)
            # taken out as seen: a re-scan of a million frees the stored digests as it goes, while ``seen`` grows
            if existing and existing.pop(r.id, None) == fingerprint:
                continue
            row: tuple[Any, ...] = (r.id, source, r.provider, r.kind, r.name, r.parent, r.scope, r.region, r.path,
                                    tags, int(r.name_signal), r.declared,
                                    encode_aliases(r.aliases) if r.aliases else "[]", fingerprint, stamp, stamp, None,
                                    facts, stem(r.name))
            if label is not None:
                encoded = label(r)
                if encoded is None:
                    row += (UNKNOWN,)
                else:
                    row += (encoded.environment,)
                    labels.append((r.id, encoded))
            pending.append(row)
            if r.aliases:
                aliases += [(a, r.id) for a in r.aliases]
            written += 1
            if len(pending) >= batch:
                flush()
        flush()
        if written >= ANALYZE_AT_LEAST and self.dialect.analyze_sql:
            self.execute(self.dialect.analyze_sql.format(table="resources"))
        return seen, written

    def _store_resources(self, rows: Sequence[tuple[Any, ...]], aliases: Sequence[tuple[str, str]],
                         before: Mapping[str, tuple[bool, str]], stamp: str, scan_id: int | None) -> None:
        """Store resources (rows in :data:`STORED_RESOURCE` order) and their aliases; ``before`` is what
        :meth:`stored_facts` says of them."""
        # a resource coming back after a tombstone starts unlabeled, so its return is a history event
        revived = [t for t, (gone, _) in before.items() if gone]
        if revived:
            self.executemany("DELETE FROM labels WHERE target = ?", [(t,) for t in revived])
            self.executemany("UPDATE resources SET label_environment = 'unknown' WHERE id = ?",
                             [(t,) for t in revived])
        self.insert_rows("fact_history", ("target", "at", "scan_id", "facts"),
                         [(row[0], stamp, scan_id, row[17]) for row in rows
                          if before.get(row[0], (False, "{}"))[1] != row[17]])
        # under the write lock no other writer adds a row meanwhile: an id not stored is inserted (on PostgreSQL
        # copied, the whole of a first commit), a stored one (live, gone or of another source) replaced
        self.insert_rows("resources", STORED_RESOURCE, [row for row in rows if row[0] not in before])
        self.upsert_rows("resources", STORED_RESOURCE, "id", [row for row in rows if row[0] in before],
                         update=RESOURCE_UPDATE)
        self.upsert_rows("aliases", ("alias", "target"), "alias", aliases)

    def _insert_labeled(self, rows: Sequence[tuple[Any, ...]], aliases: Sequence[tuple[str, str]],
                        labels: Sequence[tuple[str, EncodedLabel]], now: datetime, scan_id: int | None) -> None:
        """Store resources none of which is stored (rows in :data:`LABELED_RESOURCE` order), their aliases and the
        first labels given to them."""
        stamp = ts(now)
        self.insert_rows("fact_history", ("target", "at", "scan_id", "facts"),
                         [(row[0], stamp, scan_id, row[17]) for row in rows if row[17] != "{}"])
        self.insert_rows("resources", LABELED_RESOURCE, rows)
        self.upsert_rows("aliases", ("alias", "target"), "alias", aliases)
        self.write_first_labels(labels, now, scan_id)

    def stored_facts(self, ids: Sequence[str]) -> dict[str, tuple[bool, str]]:
        """``(tombstoned, facts as stored)`` of each of ``ids`` that is stored, whatever its source: what an
        upsert compares new facts against (the rows it is about to write; one read per 500)."""
        found: dict[str, tuple[bool, str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self.execute(f"SELECT id, tombstoned_at, facts FROM resources WHERE id IN "
                                f"({', '.join('?' * len(chunk))})", chunk).fetchall()
            found.update((r[0], (r[1] is not None, r[2])) for r in rows)
        return found

    def live_digests(self, ids: Sequence[str]) -> dict[str, str]:
        """The stored digest of each of ``ids`` that is live: what a watch event compares against."""
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            found.update(self.execute(f"SELECT id, digest FROM resources WHERE id IN ({', '.join('?' * len(chunk))}) "
                                      "AND tombstoned_at IS NULL", chunk).fetchall())
        return found

    def tombstone(self, source: str, seen: set[str], now: datetime, scan_id: int | None) -> list[str]:
        """Mark live resources of ``source`` that ``seen`` lacks as gone. Call only for complete scans.

        ``seen`` holds live ids of ``source`` (as :meth:`upsert_resources` returns them)."""
        live = self.execute("SELECT COUNT(*) FROM resources WHERE source = ? AND tombstoned_at IS NULL",
                            (source,)).fetchone()[0]
        if live == len(seen):  # every live resource was seen: skip reading a million ids back
            return []
        gone = sorted(self.live_ids(source) - seen)
        stamp = ts(now)
        self.executemany("UPDATE resources SET tombstoned_at = ? WHERE id = ?", [(stamp, g) for g in gone])
        self.executemany(
            "INSERT INTO label_history (target, at, scan_id, event, before, environment, decided_by, conflict, "
            "evidence) SELECT target, ?, ?, 'gone', environment, environment, decided_by, conflict, evidence "
            "FROM labels WHERE target = ?", [(stamp, scan_id, g) for g in gone])
        return gone

    def live_scopes(self, source: str) -> set[str]:
        rows = self.execute("SELECT DISTINCT scope FROM resources WHERE source = ? AND tombstoned_at IS NULL",
                            (source,))
        return {r[0] for r in rows.fetchall()}

    def touch_scopes(self, source: str, scopes: Iterable[str], now: datetime) -> None:
        stamp = ts(now)
        self.executemany("INSERT INTO scopes (source, scope, last_ok) VALUES (?, ?, ?) "
                         "ON CONFLICT (source, scope) DO UPDATE SET last_ok = excluded.last_ok",
                         [(source, s, stamp) for s in scopes])

    def record_scan(self, source: str, started_at: datetime, finished_at: datetime, complete: bool,
                    errors: Sequence[ScanError]) -> int:
        cur = self.execute(
            "INSERT INTO scans (source, started_at, finished_at, complete, resources, changed, removed, errors) "
            "VALUES (?, ?, ?, ?, ?, 0, 0, ?) RETURNING id",
            (source, ts(started_at), ts(finished_at), int(complete), 0,
             json.dumps([[e.scope, e.message, e.hint] for e in errors])))
        return int(cur.fetchone()[0])

    def finish_scan(self, scan_id: int, resources: int, changed: int, removed: int) -> None:
        self.execute("UPDATE scans SET resources = ?, changed = ?, removed = ? WHERE id = ?",
                     (resources, changed, removed, scan_id))

    # -- fencing ------------------------------------------------------------------------------
    def advance_fence(self, source: str, holder: str, now: datetime) -> Fence:
        """A new epoch for ``source``, held by ``holder``: every token handed out before is stale from now on."""
        row = self.execute(
            "INSERT INTO fences (source, epoch, holder, acquired_at) VALUES (?, 1, ?, ?) ON CONFLICT (source) "
            "DO UPDATE SET epoch = fences.epoch + 1, holder = excluded.holder, acquired_at = excluded.acquired_at "
            "RETURNING epoch", (source, holder, ts(now))).fetchone()
        return Fence(source, int(row[0]))

    def hold_fence(self, fence: Fence) -> None:
        """Raise :class:`FencedOut` unless ``fence`` is current; if it is, keep it so until this transaction ends.

        The no-op update takes the row's write lock (PostgreSQL) or the database's (SQLite), so a new leader's
        :meth:`advance_fence` waits for this commit instead of slipping in between the check and the commit."""
        cur = self.execute("UPDATE fences SET epoch = epoch WHERE source = ? AND epoch = ?",
                           (fence.source, fence.epoch))
        if cur.rowcount != 1:
            row = self.execute("SELECT epoch, holder FROM fences WHERE source = ?", (fence.source,)).fetchone()
            now = f"epoch {row[0]} held by {row[1]}" if row else "no epoch at all"
            raise FencedOut(f"fencing token {fence.source}@{fence.epoch} is stale ({now}): this replica is no "
                            "longer the leader, so its scan is not committed")

    # -- labeling -----------------------------------------------------------------------------
    def containers(self, below: Sequence[str] | None = None) -> dict[str, Resource]:
        """Every resource that is some live resource's parent; with ``below``, only the ancestors of those ids
        (all that labeling them needs, so relabeling a subtree does not read every container)."""
        if below is None:
            return {row[0]: resource_of(row) for row in self.execute(CONTAINERS).fetchall()}
        found: dict[str, Resource] = {}
        for start in range(0, len(below), 500):
            chunk = below[start:start + 500]
            rows = self.execute(
                f"WITH RECURSIVE up(id) AS (SELECT parent FROM resources WHERE id IN ({', '.join('?' * len(chunk))}) "
                "AND parent IS NOT NULL UNION SELECT r.parent FROM resources r JOIN up u ON r.id = u.id "
                f"WHERE r.parent IS NOT NULL) SELECT {RESOURCE} FROM resources r WHERE r.id IN (SELECT id FROM up)",
                chunk).fetchall()
            found.update((row[0], resource_of(row)) for row in rows)
        return found

    def iter_for_labeling(self, batch: int = 10000,
                          targets: Sequence[str] | None = None) -> Iterator[list[tuple[Resource, Resolution | None]]]:
        """Live resources with their current label, in id order, ``batch`` at a time."""
        for rows in self._labeling_rows(batch, targets):
            yield [(resource_of(row), resolution_of(row[12:])) for row in rows]

    def iter_encoded_labels(self, batch: int = 10000, targets: Sequence[str] | None = None,
                            ) -> Iterator[list[tuple[LabelingRow, EncodedLabel | None]]]:
        """Like :meth:`iter_for_labeling`, each resource as a :class:`LabelingRow` (a tuple: cheaper to make than a
        Resource, a million times a pass) with its current label as stored (cheap to compare).

        Resources with the same tags share one (read-only) tags mapping: tag sets repeat across an estate,
        and parsing each text once is a large part of a full relabel."""
        parsed: dict[str, dict[str, str]] = {}
        new = tuple.__new__
        for rows in self._labeling_rows(batch, targets):
            out: list[tuple[LabelingRow, EncodedLabel | None]] = []
            for row in rows:
                tags = parsed.get(row[5])
                if tags is None:
                    if len(parsed) >= 100_000:
                        parsed.clear()
                    tags = parsed[row[5]] = decode_tags(row[5])
                out.append((new(LabelingRow, (row[0], row[1], row[2], row[3], row[4], tags, row[6], row[7],
                                              bool(row[8]), row[9], row[10], row[11])),
                            None if row[12] is None else EncodedLabel(row[12], row[13], int(row[14]), row[15],
                                                                      row[16])))
            yield out

    def _labeling_rows(self, batch: int, targets: Sequence[str] | None) -> Iterator[list[Any]]:
        query = (f"SELECT {RESOURCE}, {LABEL} FROM resources r LEFT JOIN labels l ON l.target = r.id "
                 "WHERE r.tombstoned_at IS NULL")
        if targets is not None:
            for start in range(0, len(targets), 500):
                chunk = targets[start:start + 500]
                yield self.execute(f"{query} AND r.id IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
            return
        after = ""
        while True:
            rows = self.execute(f"{query} AND r.id > ? ORDER BY r.id LIMIT ?", (after, batch)).fetchall()
            if not rows:
                return
            yield rows
            after = rows[-1][0]

    def subtree(self, roots: Sequence[str]) -> list[str]:
        """``roots`` and every live resource below them."""
        found: set[str] = set()
        for start in range(0, len(roots), 500):
            chunk = list(roots[start:start + 500])
            marks = ", ".join("?" * len(chunk))
            rows = self.execute(
                # a root may never have been observed itself (an override set ahead): start from its children too
                f"WITH RECURSIVE below(id) AS (SELECT id FROM resources WHERE id IN ({marks}) OR parent IN ({marks}) "
                "UNION SELECT r.id FROM resources r JOIN below b ON r.parent = b.id WHERE r.tombstoned_at IS NULL) "
                "SELECT id FROM below", chunk + chunk).fetchall()
            found.update(r[0] for r in rows)
        return sorted(found)

    def write_labels(self, changes: Sequence[LabelChange], now: datetime, scan_id: int | None) -> None:
        """Store each change's label, with a history row. A change whose ``before`` is None is the target's first
        label (its label as read in this transaction: none), inserted (on PostgreSQL copied: all of a first
        commit's); the others replace the stored one. A change claiming no label where one is stored fails the
        transaction on its unique key, never overwriting it unrecorded."""
        stamp = ts(now)
        first: list[tuple[Any, ...]] = []
        again: list[tuple[Any, ...]] = []
        history: list[tuple[Any, ...]] = []
        # SQLite: the history rows of first labels are copied from the label rows just inserted (numbered after the
        # largest rowid before them) instead of bound from Python a second time, evidence and all
        copied = not self.dialect.copy_rows
        for c in changes:  # one pass: a first commit writes a million of each
            environment, decided_by, conflict, evidence, valid_until = c.encoded or EncodedLabel.of(c.resolution)
            (first if c.before is None else again).append(
                (c.target, environment, decided_by, conflict, evidence, valid_until, stamp, scan_id))
            if c.before is not None or not copied:
                history.append((c.target, stamp, scan_id, "label", c.before, environment, decided_by, conflict,
                                evidence, valid_until))
        if first and copied:
            last = self.execute("SELECT COALESCE(MAX(rowid), 0) FROM labels").fetchone()[0]
            self.insert_rows("labels", LABEL_COLUMNS, first)
            self.execute(FIRST_HISTORY, (last,))
        else:
            self.insert_rows("labels", LABEL_COLUMNS, first)
        self.upsert_rows("labels", LABEL_COLUMNS, "target", again)
        self.insert_rows("label_history", HISTORY_COLUMNS, history)
        # the stem index orders lookalikes by their label's environment, kept on the resource's row
        keep_label_environments(self, [(row[0], row[1]) for rows in (first, again) for row in rows])

    def write_first_labels(self, labels: Sequence[tuple[str, EncodedLabel]], now: datetime,
                           scan_id: int | None) -> None:
        """Store the first label of each ``(target, label)``, with its history row, for resources stored with its
        environment already (:meth:`upsert_resources`' ``label``): :meth:`write_labels` but the environment kept on
        the resource, which it writes afterwards."""
        if not labels:
            return
        stamp = ts(now)
        rows = [(target, *encoded, stamp, scan_id) for target, encoded in labels]
        if self.dialect.copy_rows:
            self.insert_rows("labels", LABEL_COLUMNS, rows)
            self.insert_rows("label_history", HISTORY_COLUMNS, [
                (target, stamp, scan_id, "label", None, *encoded) for target, encoded in labels])
            return
        last = self.execute("SELECT COALESCE(MAX(rowid), 0) FROM labels").fetchone()[0]
        self.insert_rows("labels", LABEL_COLUMNS, rows)
        self.execute(FIRST_HISTORY, (last,))

    def lapsed_labels(self, now: datetime) -> list[str]:
        """Targets whose label relied on an override that has expired by ``now``."""
        rows = self.execute("SELECT target FROM labels WHERE valid_until IS NOT NULL AND valid_until <= ? "
                            "ORDER BY target", (ts(now),)).fetchall()
        return [r[0] for r in rows]

    # -- overrides ----------------------------------------------------------------------------
    def set_override(self, override: Override) -> None:
        expires = ts(override.expires_at) if override.expires_at else None
        self.execute(
            "INSERT INTO overrides (target, environment, reason, author, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (target) DO UPDATE SET environment = excluded.environment, "
            "reason = excluded.reason, author = excluded.author, created_at = excluded.created_at, "
            "expires_at = excluded.expires_at",
            (override.target, override.environment, override.reason, override.author,
             ts(override.created_at), expires))
        self.execute(
            "INSERT INTO override_events (target, action, environment, reason, author, at, expires_at) "
            "VALUES (?, 'set', ?, ?, ?, ?, ?)",
            (override.target, override.environment, override.reason, override.author,
             ts(override.created_at), expires))

    def remove_override(self, target: str, author: str, reason: str, now: datetime) -> bool:
        cur = self.execute("DELETE FROM overrides WHERE target = ?", (target,))
        if cur.rowcount == 0:
            return False
        self.execute("INSERT INTO override_events (target, action, environment, reason, author, at, expires_at) "
                     "VALUES (?, 'rm', NULL, ?, ?, ?, NULL)", (target, reason, author, ts(now)))
        return True

