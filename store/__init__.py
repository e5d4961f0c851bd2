"""Persistence of observations, labels, history and overrides.

``open_store(url)`` returns a :class:`envlabel.store.sql.Store` for ``sqlite:///path``
(embedded default) or ``postgresql://...`` (several replicas, one store). Both share one
SQL implementation; only the dialect differs. The modules, by role:

    opening.py      open_store(url) and init_store(url): which files and databases become a store
    sql.py          the Store: migrating, probing, every read, and the one write transaction
    transaction.py  the write side: what scans, watch events, overrides and relabels write
    rows.py         the statements both sides share, and how a row becomes a record
    records.py      what the store hands out and takes in (StoredLabel, LabelView, LabelChange, Fence...)
    codec.py        how values are written: times, evidence, tags, the digest
    dialect.py      what a database supplies (connections, placeholders, locks), declared in full
    sqlite.py, postgresql.py   the two dialects
    locks.py        leader election's PostgreSQL advisory lock
    schema.py       versioned migrations
    failures.py     how the store fails: StoreError and CorruptStore, in sentences that say what to do

No SQL runs outside this package.
"""

from envlabel.store.failures import CorruptStore
from envlabel.store.opening import init_store, open_store
from envlabel.store.records import LabelChange, StoredLabel
from envlabel.store.sql import Store

__all__ = ["CorruptStore", "LabelChange", "Store", "StoredLabel", "init_store", "open_store"]
