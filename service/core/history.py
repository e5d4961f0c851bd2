"""Label history: every change of a target's label, and the label as of a past moment.

The store appends a history row whenever a label changes (``label``) and when a complete scan
no longer sees a resource (``gone``). ``label_at`` reads it back; a label that relied on an
override carries the override's expiry (``valid_until``), so a moment after the expiry gets the
label that followed, not the lapsed one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from envlabel.records import LabelRecord
from envlabel.service.core.query import Query, not_found, view_json
from envlabel.store.codec import ts
from envlabel.store.records import HistoryEntry, LabelView
from envlabel.targets import parse_target


def entry_json(entry: HistoryEntry) -> dict[str, Any]:
    res = entry.resolution
    return {"target": entry.target, "at": ts(entry.at), "event": entry.event, "before": entry.before,
            "environment": res.environment, "decided_by": res.decided_by, "conflict": res.conflict,
            "scan_id": entry.scan_id, "valid_until": ts(res.valid_until) if res.valid_until else None,
            "evidence": [e.as_dict() for e in res.evidence]}


def history_json(query: Query, raw_target: str) -> list[dict[str, Any]]:
    """Every label change of ``raw_target``, oldest first (raises TargetError if malformed)."""
    return [entry_json(e) for e in query.store.history(parse_target(raw_target).id)]


def label_at(query: Query, raw_target: str, at: datetime) -> LabelRecord:
    """The label JSON as it stood at ``at`` (``found: false`` if not yet labeled, or gone, then)."""
    target = parse_target(raw_target)
    # one indexed read: the history entry that stood at ``at`` and the resource as the answer shows it
    past = query.store.past_label(target.id, at)
    if past is None:
        return not_found(raw_target, target.provider) | {"at": ts(at)}
    entry = past.entry
    if entry.event == "gone":
        return not_found(raw_target, target.provider) | {
            "kind": past.kind, "name": past.name, "parent": past.parent, "gone_at": ts(entry.at), "at": ts(at)}
    resolution, since = entry.resolution, entry.at
    lapsed = resolution.valid_until
    if lapsed is not None and lapsed <= at:
        # an override it relied on had expired by then: the next recorded label (the relabel that
        # persisted the expiry) or, if none was recorded yet, the label computed without it
        later = query.store.next_history(past)
        if later is not None and later.event == "label":
            resolution = later.resolution
        else:
            stored = query.store.get(entry.target)
            assert stored is not None  # a resource with history is never deleted
            resolution = query.relabel_one(stored, at)
        since = lapsed
    # staleness is about now, not the past: a label as it stood is reported as it was
    return view_json(raw_target, LabelView(
        entry.target, past.provider, past.kind, past.name, past.parent, False, resolution.environment,
        resolution.decided_by, resolution.conflict, [e.as_dict() for e in resolution.evidence],
        resolution.valid_until, ts(since), past.facts), stale=False) | {"at": ts(at)}
