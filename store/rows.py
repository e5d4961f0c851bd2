"""The statements both sides of the store share, and how a row they read becomes a record."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from json.scanner import make_scanner
from typing import Any

from envlabel.model import Resolution, Resource
from envlabel.records import EvidenceRecord
from envlabel.store.codec import decode_evidence, decode_tags, parse_ts
from envlabel.store.records import EncodedLabel, HistoryEntry, LabelView

RESOURCE_COLUMNS = ("id, source, provider, kind, name, parent, scope, region, path, tags, name_signal, "
                     "declared, aliases, digest, first_seen, updated_at, tombstoned_at, facts")
RESOURCE = ("r.id, r.provider, r.kind, r.name, r.parent, r.tags, r.scope, r.region, r.name_signal, r.declared, "
      "r.aliases, r.path")
LABEL = "l.environment, l.decided_by, l.conflict, l.evidence, l.valid_until, l.labeled_at"
#: a resource with its label, the last good scan of its scope and its facts (:meth:`Store._stored` reads the row;
#: ``RESOURCE`` leaves the facts out: labeling, which reads it a million times a pass, never needs them)
STORED = (f"SELECT {RESOURCE}, {LABEL}, r.source, r.updated_at, r.tombstoned_at, s.last_ok, r.facts FROM resources r "
           "LEFT JOIN labels l ON l.target = r.id LEFT JOIN scopes s ON s.source = r.source AND s.scope = r.scope")
#: what the label JSON shows, without the columns labeling needs (the hot lookup: :meth:`Store.label_view`)
VIEW = ("SELECT r.id, r.provider, r.kind, r.name, r.parent, r.tombstoned_at, l.environment, l.decided_by, l.conflict, "
         "l.evidence, l.valid_until, COALESCE(s.last_ok, r.updated_at), r.facts FROM resources r "
         "LEFT JOIN labels l ON l.target = r.id LEFT JOIN scopes s ON s.source = r.source AND s.scope = r.scope")
VIEW_ONE = f"{VIEW} WHERE r.id = ?"  # a constant text: SQLite reuses the prepared statement
CONTAINERS = (f"SELECT {RESOURCE} FROM resources r WHERE r.id IN "
               "(SELECT DISTINCT parent FROM resources WHERE parent IS NOT NULL AND tombstoned_at IS NULL)")


#: the label lookup's decoder: json.loads' wrapper (a whitespace regex either side of the C scanner) costs more
#: than decoding a stored evidence list, whose compact text this store wrote itself
scan_json = make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def label_view_of(r: Sequence[Any]) -> LabelView:
    evidence: list[EvidenceRecord] = [{"signal": e[0], "environment": e[1], "source": e[2], "detail": e[3]}
                                      for e in scan_json(r[9], 0)[0]] if r[9] else []
    facts = {} if r[12] == "{}" else scan_json(r[12], 0)[0]
    return LabelView(r[0], r[1], r[2], r[3], r[4], r[5] is not None, r[6], r[7], bool(r[8]), evidence,
                     parse_ts(r[10]), r[11], facts)


def resource_of(row: Sequence[Any], tags: Mapping[str, str] | None = None,
                facts: Mapping[str, Any] | None = None) -> Resource:
    # positional, in field order: a million of these per full relabel (which reads no facts)
    return Resource(row[0], row[1], row[2], row[3], row[4], decode_tags(row[5]) if tags is None else tags,
                    row[6], row[7], bool(row[8]), row[9], () if row[10] == "[]" else tuple(json.loads(row[10])),
                    row[11], {} if facts is None else facts)


HISTORY = "target, at, scan_id, event, before, environment, decided_by, conflict, evidence, valid_until"
#: a target's last history entry at or before a moment, with the resource as the label JSON shows it
#: (a constant text: SQLite reuses its prepared statement)
#: and the facts that stood then (the last fact_history row at or before it; parameters: at, target, at)
PAST = (f"SELECT {', '.join('h.' + c for c in HISTORY.split(', '))}, h.id, r.provider, r.kind, r.name, r.parent, "
         "(SELECT f.facts FROM fact_history f WHERE f.target = h.target AND f.at <= ? ORDER BY f.at DESC, f.id DESC "
         "LIMIT 1) FROM label_history h JOIN resources r ON r.id = h.target WHERE h.target = ? AND h.at <= ? "
         "ORDER BY h.at DESC, h.id DESC LIMIT 1")


def history_entry_of(r: Sequence[Any]) -> HistoryEntry:
    at = parse_ts(r[1])
    assert at is not None
    return HistoryEntry(r[0], at, r[2], r[3], r[4], Resolution(r[5], r[6], bool(r[7]), decode_evidence(r[8]),
                                                               parse_ts(r[9])))


def encoded_of(row: Sequence[Any]) -> EncodedLabel | None:
    return None if row[0] is None else EncodedLabel(row[0], row[1], int(row[2]), row[3], row[4])


def resolution_of(row: Sequence[Any]) -> Resolution | None:
    if row[0] is None:
        return None
    return Resolution(row[0], row[1], bool(row[2]), decode_evidence(row[3]), parse_ts(row[4]))

