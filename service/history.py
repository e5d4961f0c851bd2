"""Labels as of a past moment, from the label history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from envlabel.targets import parse_target
from service.query import Query, not_found
from store.sql import ts


def label_at(query: Query, raw_target: str, at: datetime) -> dict[str, Any]:
    """The label JSON as it stood at ``at`` (``found: false`` if unlabeled or gone then)."""
    target = parse_target(raw_target)
    entry = query.store.label_at(target.id, at)
    stored = query.store.get(target.id)
    if entry is None or entry.event == "gone" or stored is None:
        return not_found(raw_target, target.provider) | {"at": ts(at)}
    r = stored.resource
    res = entry.resolution
    return {
        "target": raw_target, "found": True, "environment": res.environment,
        "authoritative": res.environment != "unknown", "decided_by": res.decided_by,
        "conflict": res.conflict, "stale": False, "observed_at": ts(entry.at), "provider": r.provider,
        "kind": r.kind, "name": r.name, "parent": r.parent, "id": r.id,
        "evidence": [e.as_dict() for e in res.evidence], "at": ts(at),
    }
