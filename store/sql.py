"""One SQL store over a DB-API connection; the dialect (SQLite, PostgreSQL) supplies connections.

A scan commits in one transaction (``Store.transaction``): resources,
tombstones, scope times, the scan record and every label change land
together or not at all, so a process killed mid-scan leaves the previous
state intact.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from json.scanner import make_scanner
from typing import Any, NamedTuple, Protocol, TypeVar

from envlabel.errors import StoreError
from envlabel.model import Evidence, Override, Resolution, Resource, ScanError
from store.schema import MIGRATIONS

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
T = TypeVar("T")


def ts(moment: datetime) -> str:
    # isoformat, not strftime(TS_FORMAT): same text, and both sit on the label lookup's hot path
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_ts(text: str | None) -> datetime | None:
    # fromisoformat reads TS_FORMAT ("...Z") ~25x faster than strptime
    return datetime.fromisoformat(text) if text else None


# Encoders built once: json.dumps with options builds a new encoder per call, which the scan path
# (a few encodes per resource, a million resources) cannot afford.
_compact = json.JSONEncoder(separators=(",", ":")).encode
_sorted_compact = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_json_str = json.encoder.encode_basestring_ascii  # a JSON string literal, as json.dumps writes it


@functools.lru_cache(maxsize=16384)
def _evidence_item(e: Evidence) -> str:
    """One evidence entry as JSON. Cached: an ancestor's evidence repeats in every label below it."""
    return f"[{_json_str(e.signal)},{_json_str(e.environment)},{_json_str(e.source)},{_json_str(e.detail)}]"


def _evidence_json(evidence: Sequence[Evidence]) -> str:
    """The same text as compact ``json.dumps([[signal, environment, source, detail], ...])``."""
    return "[" + ",".join([_evidence_item(e) for e in evidence]) + "]"


def _evidence(text: str) -> tuple[Evidence, ...]:
    return tuple(Evidence(*row) for row in json.loads(text))


def _tags_json(tags: Mapping[str, str]) -> str:
    if not tags:
        return "{}"
    return _sorted_compact(tags if type(tags) is dict else dict(tags))


def _aliases_json(aliases: Sequence[str]) -> str:
    return _compact(list(aliases)) if aliases else "[]"


def _loads_tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {} if text == "{}" else json.loads(text)
    return tags


def digest(resource: Resource, tags_json: str | None = None) -> str:
    """A fingerprint of everything labeling reads, so an unchanged resource is not rewritten.

    ``tags_json`` is the resource's tags as stored (:func:`_tags_json`), when the caller has it already.
    """
    # repr of a tuple of str/None/bool is unambiguous and self-delimiting, and cheaper than JSON
    head = repr((resource.provider, resource.kind, resource.name, resource.parent, resource.scope,
                 resource.region, resource.path, resource.name_signal, resource.declared, resource.aliases))
    body = head + (tags_json if tags_json is not None else _tags_json(resource.tags))
    return hashlib.blake2b(body.encode(), digest_size=12).hexdigest()


class AuditRow(NamedTuple):
    """A resource as the audit streams it: :class:`Resource`'s fields less its aliases, and only its
    environment tags. A tuple, because a million frozen dataclasses take seconds to build."""

    id: str
    provider: str
    kind: str
    name: str
    parent: str | None
    tags: dict[str, str]
    scope: str
    region: str
    name_signal: bool
    declared: str | None
    path: str


@dataclass(frozen=True, slots=True)
class StoredLabel:
    """A resource as stored, with its current label (if labeled) and freshness."""

    resource: Resource
    source: str
    resolution: Resolution | None
    labeled_at: datetime | None
    observed_at: datetime
    tombstoned_at: datetime | None


class LabelView(NamedTuple):
    """A resource as its label JSON shows it, read without building its records. ``environment`` is
    None while it is not labeled yet; ``observed_at`` is TS_FORMAT text; ``evidence`` is decoded."""

    id: str
    provider: str
    kind: str
    name: str
    parent: str | None
    tombstoned: bool
    environment: str | None
    decided_by: str | None
    conflict: bool
    evidence: list[dict[str, str]]
    valid_until: datetime | None
    observed_at: str


class EncodedLabel(NamedTuple):
    """A label as its row stores it. Equal rows mean an unchanged label, so a re-scan compares
    labels without decoding a million evidence lists. (A named tuple: built once per resource per scan.)"""

    environment: str
    decided_by: str
    conflict: int
    evidence: str
    valid_until: str | None

    @classmethod
    def of(cls, resolution: Resolution) -> EncodedLabel:
        return cls(resolution.environment, resolution.decided_by, int(resolution.conflict),
                   _evidence_json(resolution.evidence),
                   ts(resolution.valid_until) if resolution.valid_until else None)


@dataclass(frozen=True, slots=True)
class LabelChange:
    target: str
    before: str | None
    resolution: Resolution
    #: the resolution as stored, when the caller has encoded it already
    encoded: EncodedLabel | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    target: str
    at: datetime
    scan_id: int | None
    event: str  # "label" | "gone"
    before: str | None
    resolution: Resolution


class PastLabel(NamedTuple):
    """A history entry with the row id that orders it and what the label JSON shows of its resource."""

    entry: HistoryEntry
    row: int
    provider: str
    kind: str
    name: str
    parent: str | None


@dataclass(frozen=True, slots=True)
class Fence:
    """A fencing token: the leader's epoch for one source, handed to the commit of that source's scan."""

    source: str
    epoch: int


class FencedOut(StoreError):
    """A commit carried a fencing token that is no longer current: another replica leads now."""


class Dialect(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def serial(self) -> str: ...

    def connect(self) -> Any: ...
    def sql(self, statement: str) -> str: ...


_RESOURCE_COLUMNS = ("id, source, provider, kind, name, parent, scope, region, path, tags, name_signal, "
                     "declared, aliases, digest, first_seen, updated_at, tombstoned_at")
_R = ("r.id, r.provider, r.kind, r.name, r.parent, r.tags, r.scope, r.region, r.name_signal, r.declared, "
      "r.aliases, r.path")
_L = "l.environment, l.decided_by, l.conflict, l.evidence, l.valid_until, l.labeled_at"
#: a resource with its label and the last good scan of its scope (:meth:`Store._stored` reads the row)
_STORED = (f"SELECT {_R}, {_L}, r.source, r.updated_at, r.tombstoned_at, s.last_ok FROM resources r "
           "LEFT JOIN labels l ON l.target = r.id LEFT JOIN scopes s ON s.source = r.source AND s.scope = r.scope")
#: what the label JSON shows, without the columns labeling needs (the hot lookup: :meth:`Store.label_view`)
_VIEW = ("SELECT r.id, r.provider, r.kind, r.name, r.parent, r.tombstoned_at, l.environment, l.decided_by, l.conflict, "
         "l.evidence, l.valid_until, COALESCE(s.last_ok, r.updated_at) FROM resources r "
         "LEFT JOIN labels l ON l.target = r.id LEFT JOIN scopes s ON s.source = r.source AND s.scope = r.scope")
_VIEW_ONE = f"{_VIEW} WHERE r.id = ?"  # a constant text: SQLite reuses the prepared statement
_CONTAINERS = (f"SELECT {_R} FROM resources r WHERE r.id IN "
               "(SELECT DISTINCT parent FROM resources WHERE parent IS NOT NULL AND tombstoned_at IS NULL)")


#: the label lookup's decoder: json.loads' wrapper (a whitespace regex either side of the C scanner) costs more
#: than decoding a stored evidence list, whose compact text this store wrote itself
_scan_json = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _label_view(r: Sequence[Any]) -> LabelView:
    evidence = [{"signal": e[0], "environment": e[1], "source": e[2], "detail": e[3]}
                for e in _scan_json(r[9], 0)[0]] if r[9] else []
    return LabelView(r[0], r[1], r[2], r[3], r[4], r[5] is not None, r[6], r[7], bool(r[8]), evidence,
                     parse_ts(r[10]), r[11])


def _resource(row: Sequence[Any], tags: Mapping[str, str] | None = None) -> Resource:
    # positional, in field order: a million of these per full relabel
    return Resource(row[0], row[1], row[2], row[3], row[4], _loads_tags(row[5]) if tags is None else tags,
                    row[6], row[7], bool(row[8]), row[9], () if row[10] == "[]" else tuple(json.loads(row[10])),
                    row[11])


_H = "target, at, scan_id, event, before, environment, decided_by, conflict, evidence, valid_until"
#: a target's last history entry at or before a moment, with the resource as the label JSON shows it
#: (a constant text: SQLite reuses its prepared statement)
_PAST = (f"SELECT {', '.join('h.' + c for c in _H.split(', '))}, h.id, r.provider, r.kind, r.name, r.parent "
         "FROM label_history h JOIN resources r ON r.id = h.target WHERE h.target = ? AND h.at <= ? "
         "ORDER BY h.at DESC, h.id DESC LIMIT 1")


def _history_entry(r: Sequence[Any]) -> HistoryEntry:
    at = parse_ts(r[1])
    assert at is not None
    return HistoryEntry(r[0], at, r[2], r[3], r[4], Resolution(r[5], r[6], bool(r[7]), _evidence(r[8]),
                                                               parse_ts(r[9])))


def _encoded(row: Sequence[Any]) -> EncodedLabel | None:
    return None if row[0] is None else EncodedLabel(row[0], row[1], int(row[2]), row[3], row[4])


def _resolution(row: Sequence[Any]) -> Resolution | None:
    if row[0] is None:
        return None
    return Resolution(row[0], row[1], bool(row[2]), _evidence(row[3]), parse_ts(row[4]))


class Transaction:
    """The write side, valid inside ``Store.transaction()``."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        cur = self.conn.cursor()
        cur.execute(self.dialect.sql(statement), params)
        return cur

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        cur = self.conn.cursor()
        cur.executemany(self.dialect.sql(statement), rows)

    # -- observations -------------------------------------------------------------------------
    def live_ids(self, source: str) -> set[str]:
        rows = self.execute("SELECT id FROM resources WHERE source = ? AND tombstoned_at IS NULL", (source,))
        return {r[0] for r in rows.fetchall()}

    def upsert_resources(self, source: str, resources: Iterable[Resource], now: datetime,
                         batch: int = 5000) -> tuple[set[str], int]:
        """Insert new and changed resources. Returns (ids seen, rows written)."""
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

        def flush() -> None:
            # a resource coming back after a tombstone starts unlabeled, so its return is a history event
            revived = self.tombstoned_among([row[0] for row in pending if row[0] not in existing])
            if revived:
                self.executemany("DELETE FROM labels WHERE target = ?", [(t,) for t in revived])
            self.executemany(
                f"INSERT INTO resources ({_RESOURCE_COLUMNS}) VALUES ({', '.join('?' * 17)}) "
                "ON CONFLICT (id) DO UPDATE SET source = excluded.source, provider = excluded.provider, "
                "kind = excluded.kind, name = excluded.name, parent = excluded.parent, scope = excluded.scope, "
                "region = excluded.region, path = excluded.path, tags = excluded.tags, "
                "name_signal = excluded.name_signal, declared = excluded.declared, aliases = excluded.aliases, "
                "digest = excluded.digest, updated_at = excluded.updated_at, tombstoned_at = NULL",
                pending)
            if aliases:
                self.executemany("INSERT INTO aliases (alias, target) VALUES (?, ?) "
                                 "ON CONFLICT (alias) DO UPDATE SET target = excluded.target", aliases)
            pending.clear()
            aliases.clear()

        for r in resources:
            if r.id in seen:
                continue
            seen.add(r.id)
            tags = _tags_json(r.tags)
            fingerprint = digest(r, tags)
            if existing.get(r.id) == fingerprint:
                continue
            pending.append((r.id, source, r.provider, r.kind, r.name, r.parent, r.scope, r.region, r.path,
                            tags, int(r.name_signal), r.declared, _aliases_json(r.aliases), fingerprint,
                            stamp, stamp, None))
            if r.aliases:
                aliases += [(a, r.id) for a in r.aliases]
            written += 1
            if len(pending) >= batch:
                flush()
        flush()
        return seen, written

    def tombstoned_among(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` that are stored and gone (tombstoned), whatever their source."""
        gone: list[str] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self.execute(f"SELECT id FROM resources WHERE id IN ({', '.join('?' * len(chunk))}) "
                                "AND tombstoned_at IS NOT NULL", chunk).fetchall()
            gone += [r[0] for r in rows]
        return gone

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
            return {row[0]: _resource(row) for row in self.execute(_CONTAINERS).fetchall()}
        found: dict[str, Resource] = {}
        for start in range(0, len(below), 500):
            chunk = below[start:start + 500]
            rows = self.execute(
                f"WITH RECURSIVE up(id) AS (SELECT parent FROM resources WHERE id IN ({', '.join('?' * len(chunk))}) "
                "AND parent IS NOT NULL UNION SELECT r.parent FROM resources r JOIN up u ON r.id = u.id "
                f"WHERE r.parent IS NOT NULL) SELECT {_R} FROM resources r WHERE r.id IN (SELECT id FROM up)",
                chunk).fetchall()
            found.update((row[0], _resource(row)) for row in rows)
        return found

    def iter_for_labeling(self, batch: int = 10000,
                          targets: Sequence[str] | None = None) -> Iterator[list[tuple[Resource, Resolution | None]]]:
        """Live resources with their current label, in id order, ``batch`` at a time."""
        for rows in self._labeling_rows(batch, targets):
            yield [(_resource(row), _resolution(row[12:])) for row in rows]

    def iter_encoded_labels(self, batch: int = 10000, targets: Sequence[str] | None = None,
                            ) -> Iterator[list[tuple[Resource, EncodedLabel | None]]]:
        """Like :meth:`iter_for_labeling`, with each current label as stored (cheap to compare).

        Resources with the same tags share one (read-only) tags mapping: tag sets repeat across an estate,
        and parsing each text once is a large part of a full relabel."""
        parsed: dict[str, dict[str, str]] = {}
        for rows in self._labeling_rows(batch, targets):
            out: list[tuple[Resource, EncodedLabel | None]] = []
            for row in rows:
                tags = parsed.get(row[5])
                if tags is None:
                    if len(parsed) >= 100_000:
                        parsed.clear()
                    tags = parsed[row[5]] = _loads_tags(row[5])
                out.append((_resource(row, tags), _encoded(row[12:])))
            yield out

    def _labeling_rows(self, batch: int, targets: Sequence[str] | None) -> Iterator[list[Any]]:
        query = (f"SELECT {_R}, {_L} FROM resources r LEFT JOIN labels l ON l.target = r.id "
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
        stamp = ts(now)
        encoded = [c.encoded or EncodedLabel.of(c.resolution) for c in changes]
        rows = [(c.target, e.environment, e.decided_by, e.conflict, e.evidence, e.valid_until, stamp, scan_id)
                for c, e in zip(changes, encoded, strict=True)]
        self.executemany(
            "INSERT INTO labels (target, environment, decided_by, conflict, evidence, valid_until, labeled_at, "
            "scan_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (target) DO UPDATE SET "
            "environment = excluded.environment, decided_by = excluded.decided_by, conflict = excluded.conflict, "
            "evidence = excluded.evidence, valid_until = excluded.valid_until, labeled_at = excluded.labeled_at, "
            "scan_id = excluded.scan_id", rows)
        self.executemany(
            "INSERT INTO label_history (target, at, scan_id, event, before, environment, decided_by, conflict, "
            "evidence, valid_until) VALUES (?, ?, ?, 'label', ?, ?, ?, ?, ?, ?)",
            [(c.target, stamp, scan_id, c.before, r[1], r[2], r[3], r[4], r[5])
             for c, r in zip(changes, rows, strict=True)])

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


class Store:
    """Reads anywhere, writes inside :meth:`transaction` (one writer at a time)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._write_lock = threading.Lock()
        self._local = threading.local()
        # PostgreSQL: a pool serves reads and writes (autocommit; a transaction turns it off while it runs).
        # SQLite: one writer connection and a reader connection per thread.
        open_pool = getattr(dialect, "open_pool", None)
        self._pool: Any = open_pool() if open_pool else None
        self._writer = dialect.connect() if self._pool is None else None
        self._serialize: str | None = getattr(dialect, "write_lock", None)
        self._migrate()

    # -- plumbing -----------------------------------------------------------------------------
    def _reader(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.dialect.connect()
            self._local.conn = conn
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
        with self._reading() as conn:
            cur = conn.cursor()
            cur.execute(self.dialect.sql(statement), params)
            rows: list[Any] = cur.fetchall()
        return rows

    def _migrate(self) -> None:
        with self.transaction() as tx:
            # replicas starting at once migrate one after the other (PostgreSQL: an advisory lock; SQLite
            # serializes writers by itself)
            lock = getattr(self.dialect, "migration_lock", None)
            if lock:
                tx.execute(lock)
            tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = tx.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = int(row[0] or 0)
            if current > len(MIGRATIONS):
                raise StoreError(f"the store is at schema version {current}, newer than this envlabel "
                                 f"({len(MIGRATIONS)}); upgrade envlabel")
            for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in script.format(serial=self.dialect.serial).split(";"):
                    if statement.strip():
                        tx.execute(statement)
                tx.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    @property
    def schema_version(self) -> int:
        return int(self._query("SELECT MAX(version) FROM schema_version")[0][0])

    @contextmanager
    def transaction(self, bulk: bool = False) -> Iterator[Transaction]:
        """The one write transaction. ``bulk``: a scan's commit, for which the dialect may tune the connection."""
        with self._write_lock, self._writing() as conn, self._tuned(conn, bulk):
            try:
                tx = Transaction(conn, self.dialect)
                # one writer at a time across processes too (the dialect's write_lock: SQLite BEGIN IMMEDIATE,
                # PostgreSQL a transaction-level advisory lock), so a scan's relabel never interleaves with an
                # override set by another process (READ COMMITTED alone would let one overwrite the other)
                if self._serialize:
                    tx.execute(self._serialize)
                yield tx
                conn.commit()
            except BaseException:
                with suppress(Exception):  # a broken connection cannot roll back; the error that broke it says why
                    conn.rollback()
                raise

    @contextmanager
    def _tuned(self, conn: Any, bulk: bool) -> Iterator[None]:
        size = getattr(self.dialect, "bulk_cache_kib", None) if bulk else None
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
        rows = self._query(f"{_STORED} WHERE r.id = ?", (target,))
        if not rows:
            alias = self.resolve_id(target)
            if alias == target:
                return None
            return self.get(alias)
        return self._stored(rows[0])

    def get_many(self, targets: Sequence[str]) -> dict[str, StoredLabel]:
        """:meth:`get` for many targets, one read per 500, keyed by the id asked for (aliases resolved);
        targets never seen are absent."""
        return self._read_many(targets, _STORED, self._stored, self.get)

    def label_view(self, target: str) -> LabelView | None:
        """What the label JSON of ``target`` shows (aliases resolved), in one indexed read; None if never seen."""
        row = self._first(_VIEW_ONE, (target,))
        if row is None:
            alias = self.resolve_id(target)
            return None if alias == target else self.label_view(alias)
        return _label_view(row)

    def _first(self, statement: str, params: Sequence[Any]) -> Any:
        """The first row of a lookup (None: no row)."""
        rows = self._lookup(statement, params)
        return rows[0] if rows else None

    def _lookup(self, statement: str, params: Sequence[Any]) -> list[Any]:
        """A point read by key, the hot path agents call before every action. SQLite: on this thread's
        reader connection without the pool's context manager (a sixth of a warm lookup)."""
        if self._pool is not None:
            return self._query(statement, params)
        rows: list[Any] = self._reader().execute(self.dialect.sql(statement), params).fetchall()
        return rows

    def label_views(self, targets: Sequence[str]) -> dict[str, LabelView]:
        """:meth:`label_view` for many targets, one read per 500, keyed by the id asked for (aliases
        resolved); targets never seen are absent."""
        return self._read_many(targets, _VIEW, _label_view, self.label_view)

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
        return StoredLabel(_resource(row), row[18], _resolution(row[12:18]), parse_ts(row[17]), observed,
                           parse_ts(row[20]))

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
            f"SELECT {_R}, {_L}, r.source, r.updated_at, r.tombstoned_at, s.last_ok FROM resources r "
            "LEFT JOIN labels l ON l.target = r.id LEFT JOIN scopes s ON s.source = r.source AND s.scope = r.scope "
            f"WHERE {' AND '.join(clauses)} ORDER BY r.id{limit_sql}", params)
        return [self._stored(row) for row in rows]

    def history(self, target: str) -> list[HistoryEntry]:
        """Every label change of ``target``, oldest first."""
        rows = self._query(f"SELECT {_H} FROM label_history WHERE target = ? ORDER BY at, id",
                           (self.resolve_id(target),))
        return [_history_entry(r) for r in rows]

    def label_at(self, target: str, at: datetime) -> HistoryEntry | None:
        """The last history entry of ``target`` at or before ``at``."""
        past = self.past_label(target, at)
        return past.entry if past else None

    def past_label(self, target: str, at: datetime) -> PastLabel | None:
        """The last history entry of ``target`` at or before ``at`` with what the label JSON shows of the
        resource, in one indexed read (aliases resolved only when the id itself has no entry)."""
        rows = self._lookup(_PAST, (target, ts(at)))
        if not rows:
            alias = self.resolve_id(target)
            return None if alias == target else self.past_label(alias, at)
        r = rows[0]
        return PastLabel(_history_entry(r), r[10], r[11], r[12], r[13], r[14])

    def next_history(self, past: PastLabel) -> HistoryEntry | None:
        """The history entry of the same target right after ``past`` (None: it is the last)."""
        at = ts(past.entry.at)
        rows = self._query(f"SELECT {_H} FROM label_history WHERE target = ? AND (at > ? OR (at = ? AND id > ?)) "
                           "ORDER BY at, id LIMIT 1", (past.entry.target, at, at, past.row))
        return _history_entry(rows[0]) if rows else None

    def history_mark(self) -> int:
        """The id of the newest history entry (0 for none): where a reader of later changes starts."""
        return int(self._query("SELECT COALESCE(MAX(id), 0) FROM label_history")[0][0])

    def history_since(self, after: int, upto: int, limit: int) -> tuple[int, list[HistoryEntry]]:
        """(entries written in ``(after, upto]``, the first ``limit`` of them that changed a label's environment)."""
        span = (after, upto)
        count = int(self._query("SELECT COUNT(*) FROM label_history WHERE id > ? AND id <= ?", span)[0][0])
        rows = self._query(f"SELECT {_H} FROM label_history WHERE id > ? AND id <= ? AND event = 'label' "
                           "AND before IS NOT NULL AND before <> environment ORDER BY id LIMIT ?", (*span, limit))
        return count, [_history_entry(r) for r in rows]

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
        return {row[0]: _resource(row) for row in self._query(
            f"SELECT {_R} FROM resources r WHERE r.id IN (SELECT DISTINCT parent FROM resources "
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
        last_ok = {(r[0], r[1]): r[2] for r in self._query("SELECT source, scope, last_ok FROM scopes")}
        parsed: dict[str, dict[str, str]] = {}
        with self._reading() as conn:
            cur = conn.cursor()
            cur.execute(self.dialect.sql(
                "SELECT r.id, r.provider, r.kind, r.name, r.parent, r.tags, r.scope, r.region, r.name_signal, "
                "r.declared, r.path, r.source, r.updated_at FROM resources r WHERE r.tombstoned_at IS NULL"))
            # a million rows: unpacked in the loop header, rows built by tuple.__new__ (the named tuple's own
            # __new__ is a Python function), name_signal compared rather than bool()-called: ~0.5 s of 4
            new_row = tuple.__new__
            while rows := cur.fetchmany(batch):
                out: list[tuple[AuditRow, str, str]] = []
                append = out.append
                for rid, provider, kind, name, parent, text, scope, region, signal, declared, path, source, at in rows:
                    tags = parsed.get(text)
                    if tags is None:
                        lowered = text.lower()
                        tags = {k: v for k, v in json.loads(text).items() if k.lower() in keys} \
                            if any(n in lowered for n in needles) else {}
                        if len(parsed) > 100_000:  # tag sets repeat across an estate; bound the memo all the same
                            parsed.clear()
                        parsed[text] = tags
                    append((new_row(AuditRow, (rid, provider, kind, name, parent, tags, scope, region, signal == 1,
                                               declared, path)), source, last_ok.get((source, scope)) or at))
                yield out

    def counts(self) -> dict[tuple[str, str], int]:
        """Live resources per (provider, environment)."""
        rows = self._query(
            "SELECT r.provider, COALESCE(l.environment, 'unknown'), COUNT(*) FROM resources r "
            "LEFT JOIN labels l ON l.target = r.id WHERE r.tombstoned_at IS NULL GROUP BY 1, 2")
        return {(r[0], r[1]): int(r[2]) for r in rows}


def open_store(url: str, *, pool_size: int = 10) -> Store:
    """Open (creating and migrating) the store at ``url``; a PostgreSQL store keeps ``pool_size`` connections
    (config ``store_pool_size``)."""
    if url.startswith("sqlite://"):
        from store.sqlite import SQLiteDialect

        return Store(SQLiteDialect.from_url(url))
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from store.postgresql import PostgresDialect  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StoreError(f"PostgreSQL store needs psycopg: pip install 'envlabel[daemon]' ({exc})") from exc
        return Store(PostgresDialect.from_url(url, pool_size))
    raise StoreError(f"unsupported store URL {url!r}; use sqlite:///PATH or postgresql://USER@HOST/DB")
