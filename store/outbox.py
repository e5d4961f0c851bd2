"""The outbox rows of the Store: webhook deliveries that survive a restart, and the mark of the label history the
webhooks have announced up to.

One row is one event for one receiver (migration 7). The process that publishes writes it; the sender (the
leader's) claims due rows for a while (``claimed_by``, ``claimed_until``: an UPDATE that only takes rows nobody
holds, so two replicas never send one row at once), POSTs, and marks the row delivered, due again later, or
failed. A sender that dies mid-delivery leaves its claim to expire, and the row is sent again with the same
``delivery`` id: the receiver dedupes by it (at least once on the wire, exactly once per receiver for a receiver
that keeps the ids it has seen). A delivered or given-up row keeps its outcome but not its body (:data:`WIPED`).

``meta`` keeps the history mark (key :data:`HISTORY_MARK_KEY`): the newest ``label_history`` id whose changes were
announced. It moves in the transaction that writes their deliveries, and only from the value the announcer read
(:class:`MarkMove`), so a change is announced once even when leadership moves between replicas mid-report.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from envlabel.store.codec import parse_ts, ts

if TYPE_CHECKING:
    from envlabel.store.transaction import Transaction

#: the ``meta`` key of the newest label_history id the webhooks announced
HISTORY_MARK_KEY = "webhooks.history_mark"
#: a pending row: neither delivered nor given up on (what the partial index ``outbox_due`` holds)
PENDING = "delivered_at IS NULL AND failed_at IS NULL"
COLUMNS = "id, delivery, receiver, event, body, attempts"
#: a finished row keeps no body: an approval_requested body holds the request's one-time link key, which the store
#: otherwise keeps only as a hash (approvals.link_sha256); it sits in the outbox only while it is being delivered
WIPED = "body = ''"


class NewDelivery(NamedTuple):
    """A delivery to write: the idempotency key, the receiver's URL, the event and the body as it is sent."""

    delivery: str
    receiver: str
    event: str
    body: str


class OutboxRow(NamedTuple):
    """A claimed delivery as read back."""

    id: int
    delivery: str
    receiver: str
    event: str
    body: str
    #: attempts made before this one
    attempts: int


class MarkMove(NamedTuple):
    """Move ``meta[key]`` from ``before`` to ``after`` in the outbox's transaction."""

    key: str
    before: int
    after: int


class MarkMoved(Exception):
    """The mark was not where the announcer read it: another replica announced those changes already."""

    def __init__(self, key: str, current: int) -> None:
        super().__init__(f"{key} is at {current}: another replica announced these changes")
        self.current = current


class OutboxRows:
    """Mixed into :class:`envlabel.store.sql.Store`: uses its ``_query`` and ``transaction``."""

    if TYPE_CHECKING:
        def _query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]: ...
        def transaction(self, bulk: bool = False) -> AbstractContextManager[Transaction]: ...

    # -- the history mark ---------------------------------------------------------------------------
    def meta_value(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def init_mark(self, key: str, value: int) -> int:
        """The mark stored at ``key``, first setting it to ``value`` if there is none (a first start)."""
        with self.transaction() as tx:
            tx.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, str(value)))
            return int(tx.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    # -- writing deliveries -------------------------------------------------------------------------
    def add_to_outbox(self, deliveries: Sequence[NewDelivery], now: datetime, mark: MarkMove | None = None) -> int:
        """Write ``deliveries`` (due at once) in one transaction, moving ``mark`` with them; how many were new (a
        delivery id already there for that receiver is not written twice). Raises :class:`MarkMoved`, writing
        nothing, when the mark is no longer at ``mark.before``."""
        stamp = ts(now)
        with self.transaction() as tx:
            if mark is not None:
                move_mark(tx, mark)
            added = 0
            for d in deliveries:
                cur = tx.execute("INSERT INTO outbox (delivery, receiver, event, body, created_at, attempts, "
                                 "next_attempt_at) VALUES (?, ?, ?, ?, ?, 0, ?) ON CONFLICT (delivery, receiver) "
                                 "DO NOTHING", (d.delivery, d.receiver, d.event, d.body, stamp, stamp))
                added += max(0, int(cur.rowcount))
            return added

    # -- sending ------------------------------------------------------------------------------------
    def claim_outbox(self, claimant: str, now: datetime, until: datetime, limit: int) -> list[OutboxRow]:
        """Claim up to ``limit`` due rows nobody holds (or whose holder's claim lapsed) for ``claimant`` until
        ``until``, oldest first; the rows claimed. The outer conditions are checked again on the locked row, so
        a row another sender claimed meanwhile is not taken."""
        stamp = ts(now)
        free = f"{PENDING} AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?)"
        with self.transaction() as tx:
            tx.execute(f"UPDATE outbox SET claimed_by = ?, claimed_until = ? WHERE id IN (SELECT id FROM outbox "
                       f"WHERE {free} ORDER BY id LIMIT ?) AND {free}",
                       (claimant, ts(until), stamp, stamp, limit, stamp, stamp))
            rows = tx.execute(f"SELECT {COLUMNS} FROM outbox WHERE claimed_by = ? AND {PENDING} ORDER BY id",
                              (claimant,)).fetchall()
        return [OutboxRow(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), int(r[5])) for r in rows]

    def outbox_delivered(self, row_id: int, at: datetime) -> None:
        with self.transaction() as tx:
            tx.execute("UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, claimed_by = NULL, "
                       f"claimed_until = NULL, last_error = NULL, {WIPED} WHERE id = ?", (ts(at), row_id))

    def outbox_attempt_failed(self, row_id: int, at: datetime, error: str, retry_at: datetime | None) -> None:
        """One attempt failed with ``error``: due again at ``retry_at``, or given up on (None)."""
        stamp = ts(at)
        with self.transaction() as tx:
            if retry_at is None:
                tx.execute("UPDATE outbox SET failed_at = ?, attempts = attempts + 1, claimed_by = NULL, "
                           f"claimed_until = NULL, last_error = ?, {WIPED} WHERE id = ?", (stamp, error, row_id))
            else:
                tx.execute("UPDATE outbox SET next_attempt_at = ?, attempts = attempts + 1, claimed_by = NULL, "
                           "claimed_until = NULL, last_error = ? WHERE id = ?", (ts(retry_at), error, row_id))

    def release_outbox(self, claimant: str) -> int:
        """Let go of ``claimant``'s pending claims (a clean stop), so the next sender need not wait for them to
        lapse; how many."""
        with self.transaction() as tx:
            cur = tx.execute(f"UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ? AND "
                             f"{PENDING}", (claimant,))
            return max(0, int(cur.rowcount))

    # -- reading the state --------------------------------------------------------------------------
    def outbox_pending(self) -> int:
        return int(self._query(f"SELECT COUNT(*) FROM outbox WHERE {PENDING}")[0][0])

    def outbox_next_due(self) -> datetime | None:
        """When the soonest pending row is due (a claim may still hold it); None: nothing pending."""
        rows = self._query(f"SELECT MIN(next_attempt_at) FROM outbox WHERE {PENDING}")
        return parse_ts(rows[0][0]) if rows and rows[0][0] else None

    def outbox_deliveries(self, receiver: str | None = None) -> list[dict[str, Any]]:
        """Every row (of one ``receiver``), oldest first, as the operator reads them: what was sent, how often,
        and how it ended."""
        where, params = ("WHERE receiver = ?", (receiver,)) if receiver else ("", ())
        rows = self._query("SELECT id, delivery, receiver, event, attempts, created_at, next_attempt_at, "
                           f"delivered_at, failed_at, last_error FROM outbox {where} ORDER BY id", params)
        keys = ("id", "delivery", "receiver", "event", "attempts", "created_at", "next_attempt_at", "delivered_at",
                "failed_at", "last_error")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def purge_outbox(self, before: datetime) -> int:
        """Delete the delivered and given-up rows written before ``before``; how many. Pending rows stay."""
        with self.transaction() as tx:
            cur = tx.execute(f"DELETE FROM outbox WHERE created_at < ? AND NOT ({PENDING})", (ts(before),))
            return max(0, int(cur.rowcount))


def move_mark(tx: Transaction, mark: MarkMove) -> None:
    """Inside ``tx``: set ``meta[mark.key]`` to ``mark.after`` if it is at ``mark.before``, else raise MarkMoved
    (the store's one writer at a time makes the read and the write one step)."""
    row = tx.execute("SELECT value FROM meta WHERE key = ?", (mark.key,)).fetchone()
    current = int(row[0]) if row else None
    if current is not None and current != mark.before:
        raise MarkMoved(mark.key, current)
    tx.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
               (mark.key, str(mark.after)))
