"""The decision log: every check recorded (who, what, on what, decided as which environment, how, by which rule),
without the check waiting for it; and its reads (``envlabel decisions``, ``GET /v1/decisions``).

:meth:`DecisionLog.record` is called by :meth:`envlabel.service.core.authority.Authority.finish` for every answer,
on the check's own thread, so it only builds a :class:`DecisionRow` from fields the answer already holds.

- :class:`BatchedDecisionLog` (the daemon) puts the row on a bounded queue and returns. One writer thread takes a
  batch when it holds ``batch_size`` rows or ``flush_interval`` after it started waiting, stamps each row with the
  label snapshot (the newest label_history id of its target: one indexed read per batch) and writes the batch in
  one transaction. A full queue drops its *oldest* row (counted in ``dropped``, logged once per burst): the log
  never makes a check wait, and under overload the most recent decisions are the ones kept. A failed write is
  logged and tried once more, then its rows are dropped (counted in ``failed``): a broken store never blocks a
  check either.
- :class:`DirectDecisionLog` (the CLI: one check per process) writes at once.

The log is not an audit trail that can refuse an action: a check that could not be recorded is still answered.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from envlabel.config import Config, parse_duration
from envlabel.config import DecisionLog as DecisionLogSettings
from envlabel.errors import TargetError
from envlabel.records import CheckRecord, Decision, DecisionEntry
from envlabel.service.core.clock import TimeOutOfRange, parse_time, utcnow
from envlabel.service.core.errors import InvalidRequest
from envlabel.service.core.listing import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, encode_cursor
from envlabel.service.core.query import Query
from envlabel.store.codec import ts
from envlabel.store.decisions import StoredDecision
from envlabel.store.records import DecisionRow
from envlabel.store.sql import Store
from envlabel.targets import parse_target

if TYPE_CHECKING:
    from envlabel.service.core.authority import Caller

log = logging.getLogger("envlabel.decisions")

DECISIONS: tuple[Decision, ...] = ("allow", "require_approval", "deny")
#: the decisions shadow mode counts: what enforcement would have stopped
BLOCKING: tuple[Decision, ...] = ("deny", "require_approval")
_RELATIVE = re.compile(r"^\d+[smhd]$")


def decision_row(answer: CheckRecord, caller: Caller, at: datetime) -> DecisionRow:
    """The row of one answer: its fields as they are (cheap: this runs on the check's thread). The label
    snapshot is left to the writer."""
    approval = answer.get("approval")
    return DecisionRow(
        at=at, principal=caller.principal, claimed=caller.claimed, groups=caller.groups, interface=caller.interface,
        mode=answer.get("mode", "enforce"), action=answer["action"], action_class=answer["action_class"],
        target=answer["target"], target_id=answer["label"].get("id"), environment=answer["environment"],
        decision=answer["decision"], rule=answer["rule"], reasons=tuple(answer["reasons"]), label_snapshot=None,
        approval_id=approval["id"] if approval else None, dry_run=caller.dry_run)


def write_rows(store: Store, rows: Sequence[DecisionRow]) -> None:
    """Write ``rows`` stamped with the newest label_history id of their targets (one read for the batch)."""
    store.record_decisions(rows, store.label_snapshots([r.target_id for r in rows if r.target_id]))


class DecisionLog:
    """Where :class:`~envlabel.service.core.authority.Authority` records every answer."""

    def record(self, answer: CheckRecord, caller: Caller, at: datetime) -> None:
        """Record one answer; returns at once and never raises (a check is answered whatever the log does)."""
        raise NotImplementedError

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything recorded so far is written (or dropped); False if ``timeout`` passed first."""
        raise NotImplementedError


class DirectDecisionLog(DecisionLog):
    """Writes each answer at once, in the caller's thread (the CLI: one check, then the process exits)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: answers that could not be written (logged)
        self.failed = 0

    def record(self, answer: CheckRecord, caller: Caller, at: datetime) -> None:
        try:
            write_rows(self.store, [decision_row(answer, caller, at)])
        except Exception as exc:
            self.failed += 1
            log.warning("the decision on %s was not recorded in the decision log: %s: %s", answer["target"],
                        type(exc).__name__, exc)

    def flush(self, timeout: float | None = None) -> bool:
        return True


class BatchedDecisionLog(DecisionLog):
    """A bounded queue and one writer thread (see the module's docstring). ``start()`` it, ``stop()`` it."""

    def __init__(self, store: Store, settings: DecisionLogSettings) -> None:
        self.store = store
        self.batch_size = settings.batch_size
        self.flush_interval = settings.flush_interval.total_seconds()
        self.max_queue = settings.max_queue
        self._queue: deque[DecisionRow] = deque()
        self._cond = threading.Condition(threading.Lock())
        #: rows recorded, and rows done with (written, dropped or failed): they are done with in the order
        #: recorded, so everything recorded up to n is done once ``_done >= n``
        self._recorded = 0
        self._done = 0
        self._flushing = 0
        self._stopping = False
        self._bursting = False
        self._thread: threading.Thread | None = None
        #: rows written; rows dropped because the queue was full; rows dropped because their write failed twice
        self.written = 0
        self.dropped = 0
        self.failed = 0

    # -- the check's side ----------------------------------------------------------------------
    def record(self, answer: CheckRecord, caller: Caller, at: datetime) -> None:
        try:
            row = decision_row(answer, caller, at)
        except Exception:  # an answer missing a field is a bug elsewhere; the check is answered all the same
            log.exception("could not build the decision log row of an answer on %s", answer.get("target"))
            return
        with self._cond:
            queue = self._queue
            if len(queue) >= self.max_queue:
                queue.popleft()
                self.dropped += 1
                self._done += 1
                if not self._bursting:
                    self._bursting = True
                    log.warning("the decision log's queue is full (%d): dropping the oldest decisions until the "
                                "writer catches up (a slow or broken store?); see `dropped`", self.max_queue)
            queue.append(row)
            self._recorded += 1
            if len(queue) == 1 or len(queue) == self.batch_size:  # wake the writer: work, or a full batch
                self._cond.notify_all()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> BatchedDecisionLog:
        """Start the writer thread (again a no-op while it runs)."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="envlabel-decision-log", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Write what is queued and end the writer; False if that took longer than ``timeout`` (the rest is lost)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            return self.flush(timeout)
        thread.join(timeout)
        return not thread.is_alive()

    def flush(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._recorded
            running = self._thread is not None and self._thread.is_alive()
        if not running:  # no writer (not started, or stopped): write here
            self._drain()
            return True
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._done >= target,
                                           None if deadline is None else max(0.0, deadline - time.monotonic()))
            finally:
                self._flushing -= 1

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    # -- the writer ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._write(batch)

    def _next_batch(self) -> list[DecisionRow] | None:
        """The next batch: ``batch_size`` rows, or what is queued ``flush_interval`` after the writer woke
        (at once when flushing or stopping); None once stopping with nothing left."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._queue) or self._stopping)
            if not self._queue:
                return None
            deadline = time.monotonic() + self.flush_interval
            while len(self._queue) < self.batch_size and not self._stopping and not self._flushing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._take()

    def _take(self) -> list[DecisionRow]:
        queue = self._queue
        count = min(len(queue), self.batch_size)
        batch = [queue.popleft() for _ in range(count)]
        if self._bursting and len(queue) < self.max_queue // 2:
            self._bursting = False
            log.warning("the decision log caught up; %d decisions dropped so far", self.dropped)
        return batch

    def _drain(self) -> None:
        """Write everything queued, in this thread (a flush without a writer)."""
        while True:
            with self._cond:
                if not self._queue:
                    return
                batch = self._take()
            self._write(batch)

    def _write(self, batch: list[DecisionRow]) -> None:
        """Write one batch, trying once more after a failure; then count it as written or failed."""
        ok = self._try_write(batch) or self._retry(batch)
        with self._cond:
            if ok:
                self.written += len(batch)
            else:
                self.failed += len(batch)
            self._done += len(batch)
            self._cond.notify_all()

    def _try_write(self, batch: list[DecisionRow]) -> bool:
        try:
            write_rows(self.store, batch)
        except Exception as exc:
            log.warning("writing %d decisions to the decision log failed: %s: %s", len(batch), type(exc).__name__,
                        exc)
            return False
        return True

    def _retry(self, batch: list[DecisionRow]) -> bool:
        with self._cond:  # a moment for a transient failure (a lock, a failover), cut short by stop or flush
            self._cond.wait_for(lambda: self._stopping or bool(self._flushing), self.flush_interval)
        if self._try_write(batch):
            return True
        log.error("%d decisions dropped from the decision log: their write failed twice (see above)", len(batch))
        return False


def decision_log_for(config: Config, store: Store) -> BatchedDecisionLog | None:
    """The daemon's decision log (not started yet), or None when ``decisions.enabled`` is false."""
    return BatchedDecisionLog(store, config.decisions) if config.decisions.enabled else None


# -- reads ----------------------------------------------------------------------------------------
def list_decisions(query: Query, *, target: str | None = None, principal: str | None = None,
                   decision: str | None = None, since: str | datetime | None = None, would_block: bool = False,
                   limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> dict[str, Any]:
    """``{"decisions": [DecisionEntry...], "next_cursor": str | None}``, newest first; raises InvalidRequest
    naming the first bad filter."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest("limit", f"must be between 1 and {MAX_LIMIT}; page with next_cursor")
    rows = query.store.decisions(
        target_id=target_id_of(query, target), principal=principal_of(principal), decision=decision_of(decision),
        since=since_of(since), would_block=would_block, before_id=cursor_id(cursor) if cursor else None,
        limit=limit + 1)
    page = rows[:limit]
    return {"decisions": [decision_entry(d) for d in page],
            "next_cursor": encode_cursor(str(page[-1].id)) if len(rows) > limit else None}


def would_block_report(query: Query, since: str | datetime | None = None, *,
                       principal: str | None = None) -> dict[str, Any]:
    """What enforcement would have stopped in audit mode: ``{"since", "total", "by": [{"principal",
    "environment", "decisions": {"deny": n, "require_approval": m}}]}``, the largest first; ``principal``: only
    that one's (a reader token's own)."""
    moment = since_of(since)
    groups: dict[tuple[str, str], dict[str, int]] = {}
    for who, environment, decision, count in query.store.would_block_counts(moment, principal_of(principal)):
        counts = groups.setdefault((who, environment), dict.fromkeys(BLOCKING, 0))
        counts[decision] = counts.get(decision, 0) + count
    ranked = sorted(groups.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    by = [{"principal": p, "environment": e, "decisions": c} for (p, e), c in ranked]
    return {"since": ts(moment) if moment else None, "total": sum(sum(c.values()) for c in groups.values()),
            "by": by}


def decision_entry(stored: StoredDecision) -> DecisionEntry:
    """The JSON of one stored decision (its interface, mode, class and decision were written from the records'
    literals, so they read back as them)."""
    r = stored.row
    return cast(DecisionEntry, {
        "id": stored.id, "at": ts(r.at), "principal": r.principal, "claimed_principal": r.claimed,
        "groups": list(r.groups), "interface": r.interface, "mode": r.mode, "action": r.action,
        "action_class": r.action_class, "target": r.target, "target_id": r.target_id, "environment": r.environment,
        "decision": r.decision, "rule": r.rule, "reasons": list(r.reasons), "label_snapshot": r.label_snapshot,
        "approval_id": r.approval_id, "dry_run": r.dry_run, "would_block": r.mode == "audit" and r.decision != "allow"})


def target_id_of(query: Query, target: str | None) -> str | None:
    """The canonical stored id of ``target`` in any accepted form (an alias resolves to its resource)."""
    if target is None:
        return None
    try:
        parsed = parse_target(target)
    except TargetError as exc:
        raise InvalidRequest("target", f"{exc}; pass the target as an ARN, k8s:// or GCP resource name") from None
    return query.store.resolve_id(parsed.id)


def principal_of(principal: str | None) -> str | None:
    if principal is None:
        return None
    if not principal.strip():
        raise InvalidRequest("principal", "is empty; pass a principal name (ci-deployer, user:alice) or omit it")
    return principal.strip()


def decision_of(decision: str | None) -> str | None:
    if decision is not None and decision not in DECISIONS:
        raise InvalidRequest("decision", f"{decision!r} is not one of {', '.join(DECISIONS)}")
    return decision


def since_of(since: str | datetime | None, now: datetime | None = None) -> datetime | None:
    """``since`` as a moment: an ISO 8601 time, or a duration back from now (``90m``, ``24h``, ``7d``)."""
    if since is None or isinstance(since, datetime):
        return since
    text = since.strip()
    if _RELATIVE.match(text):
        try:
            return (now or utcnow()) - parse_duration(text)
        except ValueError as exc:
            raise InvalidRequest("since", f"{exc}") from None
    try:
        return parse_time(text, "since")
    except TimeOutOfRange:
        raise
    except InvalidRequest:
        raise InvalidRequest("since", f"{since!r} is neither a time (2026-01-31T12:00:00Z) nor a duration back "
                                      "from now (90m, 24h, 7d)") from None


def cursor_id(cursor: str) -> int:
    text = decode_cursor(cursor)
    if not text.isdigit():
        raise InvalidRequest("cursor", "not a cursor of the decision log; pass next_cursor from the previous "
                                       "page unchanged, or omit it to start from the newest")
    return int(text)

