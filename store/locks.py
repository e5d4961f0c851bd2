"""Leader election's PostgreSQL lock: a session-level advisory lock on a connection of its own.

The daemon's leader election (:mod:`envlabel.service.daemon.leader`) holds it while it leads; the
session ending (a crash, a lost connection) releases it, so a follower takes over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("envlabel.leader")


class AdvisoryLock:
    """A session-level ``pg_try_advisory_lock`` on a connection of its own, scoped to the store's database and
    schema (two installations sharing a server do not contend)."""

    _KEY = "hashtextextended('envlabel-leader:' || current_database() || '/' || current_schema(), 0)"

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._conn: Any = None
        self._held = False
        self.description = "a PostgreSQL advisory lock"
        self.lost_on_error = True

    def try_acquire(self) -> bool:
        try:
            if self._conn is None:
                self._conn = self._connect()
            if self._held:
                self._conn.execute("SELECT 1")  # the session, and so the lock, is still there
            else:
                self._held = bool(self._conn.execute(f"SELECT pg_try_advisory_lock({self._KEY})").fetchone()[0])
        except Exception:
            # a broken session has lost its lock for certain: never claim it on a maybe
            self._drop()
            raise
        return self._held

    def release(self) -> None:
        if self._conn is not None and self._held:
            try:
                self._conn.execute(f"SELECT pg_advisory_unlock({self._KEY})")
            except Exception:  # closing the session releases it as well
                log.debug("advisory unlock failed; closing the session releases the lock", exc_info=True)
        self._drop()

    def _drop(self) -> None:
        self._held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing the leader election connection failed", exc_info=True)
