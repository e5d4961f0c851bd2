"""Persistence of observations, labels, history and overrides.

``open_store(url)`` returns a :class:`envlabel.store.sql.Store` for ``sqlite:///path``
(embedded default) or ``postgresql://...`` (several replicas, one store). Both share one
SQL implementation; only the dialect differs. The modules, by role:

    sql.py          the Store: opening, migrating, every read, and the one write transaction
    transaction.py  the write side: what scans, watch events, overrides and relabels write
    rows.py         the statements both sides share, and how a row becomes a record
    records.py      what the store hands out and takes in (StoredLabel, LabelView, LabelChange, Fence...)
    codec.py        how values are written: times, evidence, tags, the digest
    dialect.py      what a database supplies (connections, placeholders, locks), declared in full
    sqlite.py, postgresql.py   the two dialects
    locks.py        leader election's PostgreSQL advisory lock
    schema.py       versioned migrations

No SQL runs outside this package.
"""

from envlabel.store.records import LabelChange, StoredLabel
from envlabel.store.sql import Store, open_store

__all__ = ["LabelChange", "Store", "StoredLabel", "open_store"]
