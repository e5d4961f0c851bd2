"""What the store hands out and takes in: rows as records, label changes, history entries, fencing tokens."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from envlabel.errors import StoreError
from envlabel.model import Resolution, Resource
from envlabel.records import EvidenceRecord
from envlabel.store.codec import encode_evidence, ts


class AuditRow(NamedTuple):
    """A resource as the audit streams it: :class:`Resource`'s fields less its aliases, and only its
    environment tags. A tuple, because a million frozen dataclasses take seconds to build."""

    id: str
    provider: str
    kind: str
    name: str
    parent: str | None
    tags: dict[str, str]
    scope: str
    region: str
    name_signal: bool
    declared: str | None
    path: str
    #: the recovery facts (decoded; ``{}`` when none): the audit's ``unrecoverable`` finding reads them
    facts: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StoredLabel:
    """A resource as stored, with its current label (if labeled) and freshness."""

    resource: Resource
    source: str
    resolution: Resolution | None
    labeled_at: datetime | None
    observed_at: datetime
    tombstoned_at: datetime | None


class LabelView(NamedTuple):
    """A resource as its label JSON shows it, read without building its records. ``environment`` is
    None while it is not labeled yet; ``observed_at`` is TS_FORMAT text; ``evidence`` is decoded."""

    id: str
    provider: str
    kind: str
    name: str
    parent: str | None
    tombstoned: bool
    environment: str | None
    decided_by: str | None
    conflict: bool
    evidence: list[EvidenceRecord]
    valid_until: datetime | None
    observed_at: str
    #: the recovery facts as stored (decoded; ``{}`` when none)
    facts: Mapping[str, Any]


class EncodedLabel(NamedTuple):
    """A label as its row stores it. Equal rows mean an unchanged label, so a re-scan compares
    labels without decoding a million evidence lists. (A named tuple: built once per resource per scan.)"""

    environment: str
    decided_by: str
    conflict: int
    evidence: str
    valid_until: str | None

    @classmethod
    def of(cls, resolution: Resolution) -> EncodedLabel:
        return cls(resolution.environment, resolution.decided_by, int(resolution.conflict),
                   encode_evidence(resolution.evidence),
                   ts(resolution.valid_until) if resolution.valid_until else None)


@dataclass(frozen=True, slots=True)
class LabelChange:
    target: str
    before: str | None
    resolution: Resolution
    #: the resolution as stored, when the caller has encoded it already
    encoded: EncodedLabel | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    target: str
    at: datetime
    scan_id: int | None
    event: str  # "label" | "gone"
    before: str | None
    resolution: Resolution


class PastLabel(NamedTuple):
    """A history entry with the row id that orders it and what the label JSON shows of its resource."""

    entry: HistoryEntry
    row: int
    provider: str
    kind: str
    name: str
    parent: str | None
    #: the recovery facts that stood at that moment (``{}``: none recorded by then)
    facts: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Fence:
    """A fencing token: the leader's epoch for one source, handed to the commit of that source's scan."""

    source: str
    epoch: int


class FencedOut(StoreError):
    """A commit carried a fencing token that is no longer current: another replica leads now."""



@dataclass(frozen=True, slots=True)
class DecisionRow:
    """One decision as the log stores it (``decisions`` table); ``label_snapshot`` is the label_history id of
    the target's label when it was decided (filled by the log's writer, off the check's path)."""

    at: datetime
    principal: str
    claimed: str | None
    groups: tuple[str, ...]
    interface: str
    mode: str
    action: str
    action_class: str
    target: str
    target_id: str | None
    environment: str
    decision: str
    rule: str
    reasons: tuple[str, ...]
    label_snapshot: int | None
    approval_id: str | None
    dry_run: bool


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    """One approval request as stored (``approvals`` table); ``snapshot`` is the check JSON it was asked from
    (environment, evidence, reasons, reversibility, lookalikes): what the approver is shown."""

    id: str
    status: str
    principal: str
    action: str
    target: str
    target_id: str
    digest: str
    environment: str
    created_at: datetime
    expires_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    spent_at: datetime | None
    link_sha256: str | None
    snapshot: dict[str, Any]
