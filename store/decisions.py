"""The decisions rows of the Store: the decision log's writes (in batches), its reads (newest first, by index),
the shadow-mode counts, the retention purge, and the label snapshot ids a batch is stamped with.

Every read is served by an index of migration 5: ``decisions_principal (principal, id)``, ``decisions_target
(target_id, id)``, ``decisions_decision (decision, id)`` for a filtered page (newest first, keyed by id so a cursor
stays valid while decisions are added), ``decisions_at (at)`` for ``since`` and the purge.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from envlabel.store.codec import parse_ts, ts
from envlabel.store.records import DecisionRow

if TYPE_CHECKING:
    from envlabel.store.dialect import Dialect
    from envlabel.store.transaction import Transaction

COLUMNS = ("at, principal, claimed, groups, interface, mode, action, action_class, target, target_id, environment, "
           "decision, rule, reasons, label_snapshot, approval_id, dry_run")
#: rows a purge deletes per transaction: a retention pass over months of decisions never holds the one writer
#: (scans, overrides) for long
PURGE_CHUNK = 5000
#: ids per ``IN (...)`` of a label snapshot read
SNAPSHOT_CHUNK = 500
#: built once (json.dumps with options builds an encoder per call); tuples encode as lists
_compact = json.JSONEncoder(separators=(",", ":")).encode


class StoredDecision(NamedTuple):
    """A decision as read back: its row id (what orders the log and what a cursor holds) and the row."""

    id: int
    row: DecisionRow


class DecisionsRows:
    """Mixed into :class:`envlabel.store.sql.Store`: uses its ``_query`` and ``transaction``."""

    if TYPE_CHECKING:
        dialect: Dialect

        def _query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]: ...
        def transaction(self, bulk: bool = False) -> AbstractContextManager[Transaction]: ...

    def record_decisions(self, rows: Sequence[DecisionRow], snapshots: Mapping[str, int] | None = None) -> None:
        """Write ``rows`` in one transaction (the decision log's writer calls it once per batch). ``snapshots``
        (:meth:`label_snapshots` of their targets) fills the ``label_snapshot`` of rows that have none, so a batch
        is stamped without building its rows again."""
        if not rows:
            return
        values = [encoded(row, snapshots) for row in rows]
        with self.transaction() as tx:
            tx.executemany(f"INSERT INTO decisions ({COLUMNS}) VALUES ({', '.join('?' * 17)})", values)

    def decisions(self, *, target_id: str | None = None, principal: str | None = None, decision: str | None = None,
                  since: datetime | None = None, would_block: bool = False, before_id: int | None = None,
                  limit: int = 100) -> list[StoredDecision]:
        """Decisions matching every filter given, newest first, at most ``limit``; ``before_id``: only those
        older than that one (the next page). ``would_block``: audit mode and not allow."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("target_id", target_id), ("principal", principal), ("decision", decision)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("at >= ?")
            params.append(ts(since))
        if would_block:
            clauses.append("mode = 'audit' AND decision <> 'allow'")
        if before_id is not None:
            clauses.append("id < ?")
            params.append(before_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(f"SELECT id, {COLUMNS} FROM decisions{where} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [StoredDecision(int(r[0]), decoded(r[1:])) for r in rows]

    def would_block_counts(self, since: datetime | None = None,
                           principal: str | None = None) -> list[tuple[str, str, str, int]]:
        """``(principal, environment, decision, count)`` of the audit-mode decisions that were not allow (what
        enforcement would have stopped), since ``since`` (None: all kept), of one ``principal`` (None: all)."""
        clauses, params = [], []
        if since is not None:
            clauses.append("AND at >= ?")
            params.append(ts(since))
        if principal is not None:
            clauses.append("AND principal = ?")
            params.append(principal)
        where = " ".join(clauses)
        rows = self._query("SELECT principal, environment, decision, COUNT(*) FROM decisions "
                           f"WHERE mode = 'audit' AND decision <> 'allow' {where} "
                           "GROUP BY principal, environment, decision ORDER BY principal, environment, decision",
                           params)
        return [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    def purge_decisions(self, before: datetime) -> int:
        """Delete the decisions made before ``before`` (retention), a chunk per transaction; how many."""
        cutoff = ts(before)
        deleted = 0
        while True:
            with self.transaction() as tx:
                cur = tx.execute("DELETE FROM decisions WHERE id IN "
                                 "(SELECT id FROM decisions WHERE at < ? ORDER BY at LIMIT ?)", (cutoff, PURGE_CHUNK))
                count = max(0, int(cur.rowcount))
            deleted += count
            if count < PURGE_CHUNK:
                return deleted

    def label_snapshots(self, target_ids: Sequence[str]) -> dict[str, int]:
        """The newest label_history id of each of ``target_ids`` (canonical ids); one never labeled is absent."""
        found: dict[str, int] = {}
        for chunk in chunks(list(dict.fromkeys(target_ids)), SNAPSHOT_CHUNK):
            rows = self._query(f"SELECT target, MAX(id) FROM label_history WHERE target IN "
                               f"({', '.join('?' * len(chunk))}) GROUP BY target", chunk)
            found.update((str(r[0]), int(r[1])) for r in rows)
        return found


def encoded(row: DecisionRow, snapshots: Mapping[str, int] | None = None) -> tuple[Any, ...]:
    """``row`` as its columns store it (in :data:`COLUMNS` order)."""
    snapshot = row.label_snapshot
    if snapshot is None and snapshots and row.target_id is not None:
        snapshot = snapshots.get(row.target_id)
    return (ts(row.at), row.principal, row.claimed, _compact(row.groups) if row.groups else "[]", row.interface,
            row.mode, row.action, row.action_class, row.target, row.target_id, row.environment, row.decision,
            row.rule, _compact(row.reasons) if row.reasons else "[]", snapshot, row.approval_id, int(row.dry_run))


def decoded(r: Sequence[Any]) -> DecisionRow:
    """The row read back (columns in :data:`COLUMNS` order)."""
    at = parse_ts(r[0])
    assert at is not None
    return DecisionRow(at, r[1], r[2], tuple(json.loads(r[3])), r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11],
                       r[12], tuple(json.loads(r[13])), None if r[14] is None else int(r[14]), r[15], bool(r[16]))


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
