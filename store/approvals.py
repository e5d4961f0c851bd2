"""The approvals rows of the Store: requests bound to (principal, action, target id, parameters digest).

Every write runs inside the store's one write transaction (SQLite ``BEGIN IMMEDIATE``, PostgreSQL a
transaction-level advisory lock), so "reuse the pending request or create one" is a single step and two callers
asking at once get the same request. Spending is one conditional UPDATE (``... WHERE status = 'approved' AND
expires_at > now``): of any number of callers racing for one approval, across threads, processes or replicas,
exactly one sees its row count be 1.

Times are stored as TS_FORMAT text (fixed width, UTC), so ``expires_at > ?`` compares them in order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from envlabel.store.codec import parse_ts, ts
from envlabel.store.records import ApprovalRow

if TYPE_CHECKING:
    from envlabel.store.transaction import Transaction

APPROVAL_COLUMNS = ("id, status, principal, action, target, target_id, digest, environment, created_at, expires_at, "
                    "decided_by, decided_at, decision_reason, spent_at, link_sha256, snapshot")
#: the statuses whose request still counts for its key (a pending one is reused, an approved one spent)
LIVE = ("pending", "approved")
#: the statuses a decision sets
DECIDED = ("approved", "denied")
_LIVE_SQL = "status IN ('pending', 'approved')"


def _row_of(r: Sequence[Any]) -> ApprovalRow:
    return ApprovalRow(
        id=r[0], status=r[1], principal=r[2], action=r[3], target=r[4], target_id=r[5], digest=r[6],
        environment=r[7], created_at=_moment(r[8]), expires_at=_moment(r[9]), decided_by=r[10],
        decided_at=parse_ts(r[11]), decision_reason=r[12], spent_at=parse_ts(r[13]), link_sha256=r[14],
        snapshot=json.loads(r[15]))


def _moment(text: str) -> datetime:
    moment = parse_ts(text)
    assert moment is not None  # NOT NULL columns
    return moment


def _values(row: ApprovalRow) -> tuple[Any, ...]:
    return (row.id, row.status, row.principal, row.action, row.target, row.target_id, row.digest, row.environment,
            ts(row.created_at), ts(row.expires_at), row.decided_by, ts(row.decided_at) if row.decided_at else None,
            row.decision_reason, ts(row.spent_at) if row.spent_at else None, row.link_sha256,
            json.dumps(row.snapshot, separators=(",", ":"), sort_keys=True, default=str))


class ApprovalsRows:
    """Mixed into :class:`envlabel.store.sql.Store`: uses its ``_query`` and ``transaction``."""

    if TYPE_CHECKING:
        def _query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]: ...

        def transaction(self, bulk: bool = False) -> AbstractContextManager[Transaction]: ...

    def create_approval(self, row: ApprovalRow) -> None:
        """Store a new request (its id must be new)."""
        with self.transaction() as tx:
            tx.execute(f"INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ({', '.join('?' * 16)})", _values(row))

    def live_or_create_approval(self, row: ApprovalRow, now: datetime) -> tuple[ApprovalRow, bool]:
        """The newest pending-or-approved unexpired request for ``row``'s key, or ``row`` stored as new; True
        when it was created. One transaction: callers asking at once for one key share one request."""
        with self.transaction() as tx:
            found = tx.execute(
                f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE principal = ? AND action = ? AND target_id = ? "
                f"AND digest = ? AND {_LIVE_SQL} AND expires_at > ? ORDER BY created_at DESC, id DESC LIMIT 1",
                (row.principal, row.action, row.target_id, row.digest, ts(now))).fetchall()
            if found:
                return _row_of(found[0]), False
            tx.execute(f"INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ({', '.join('?' * 16)})", _values(row))
        return row, True

    def approval(self, approval_id: str) -> ApprovalRow | None:
        rows = self._query(f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?", (approval_id,))
        return _row_of(rows[0]) if rows else None

    def find_approval(self, principal: str, action: str, target_id: str, digest: str,
                      now: datetime) -> ApprovalRow | None:
        """The newest pending-or-approved request for this key that has not expired at ``now`` (one indexed read)."""
        rows = self._query(
            f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE principal = ? AND action = ? AND target_id = ? "
            f"AND digest = ? AND {_LIVE_SQL} AND expires_at > ? ORDER BY created_at DESC, id DESC LIMIT 1",
            (principal, action, target_id, digest, ts(now)))
        return _row_of(rows[0]) if rows else None

    def list_approvals(self, status: str | None = None, principal: str | None = None, limit: int = 100, *,
                       now: datetime | None = None) -> list[ApprovalRow]:
        """Requests, newest first. With ``now``, a pending or approved request past its expiry counts as
        ``expired`` (what the daemon's :meth:`expire_approvals` would have made it) and not as its stored status."""
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            if now is not None and status in LIVE:
                where.append("status = ? AND expires_at > ?")
                params += [status, ts(now)]
            elif now is not None and status == "expired":
                where.append(f"(status = 'expired' OR ({_LIVE_SQL} AND expires_at <= ?))")
                params.append(ts(now))
            else:
                where.append("status = ?")
                params.append(status)
        if principal is not None:
            where.append("principal = ?")
            params.append(principal)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._query(f"SELECT {APPROVAL_COLUMNS} FROM approvals{clause} ORDER BY created_at DESC, id DESC "
                           "LIMIT ?", (*params, int(limit)))
        return [_row_of(r) for r in rows]

    def decide_approval(self, approval_id: str, status: str, by: str, reason: str, now: datetime) -> bool:
        """Approve or deny a pending, unexpired request; False when it is not (any more) pending or has expired.
        The one-time link key is cleared: a link decides its request once."""
        if status not in DECIDED:
            raise ValueError(f"a decision is one of {', '.join(DECIDED)}, not {status!r}")
        stamp = ts(now)
        with self.transaction() as tx:
            cur = tx.execute(
                "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, decision_reason = ?, "
                "link_sha256 = NULL WHERE id = ? AND status = 'pending' AND expires_at > ?",
                (status, by, stamp, reason, approval_id, stamp))
            return int(cur.rowcount) == 1

    def spend_approval(self, approval_id: str, now: datetime) -> bool:
        """Spend an approved, unexpired request: True for exactly one caller, however many race for it."""
        stamp = ts(now)
        with self.transaction() as tx:
            cur = tx.execute("UPDATE approvals SET status = 'spent', spent_at = ? "
                             "WHERE id = ? AND status = 'approved' AND expires_at > ?", (stamp, approval_id, stamp))
            return int(cur.rowcount) == 1

    def expire_approvals(self, now: datetime) -> int:
        """Mark every pending or approved request past its expiry ``expired``; returns how many."""
        with self.transaction() as tx:
            cur = tx.execute(f"UPDATE approvals SET status = 'expired' WHERE {_LIVE_SQL} AND expires_at <= ?",
                             (ts(now),))
            return int(cur.rowcount)
