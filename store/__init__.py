"""Persistence of observations, labels, history and overrides.

``open_store(url)`` returns a :class:`store.sql.Store` for ``sqlite:///path``
(embedded default) or ``postgresql://...`` (several replicas, one store).
Both share one SQL implementation; only the dialect differs.
"""

from store.sql import LabelChange, Store, StoredLabel, open_store

__all__ = ["LabelChange", "Store", "StoredLabel", "open_store"]
