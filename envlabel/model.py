"""Typed records shared by every layer.

Observations (:class:`Resource`) come out of ``envlabel.discovery``; labels and
evidence come out of ``labelers``; ``store`` keeps both. All are frozen:
a record is a fact about one moment, never edited in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from envlabel.records import EvidenceRecord

UNKNOWN = "unknown"

#: Signal kinds, in the order DESIGN.md lists them.
OVERRIDE = "override"
TAG = "tag"
INHERITED = "inherited"
NAME = "name"
NONE = "none"


@dataclass(frozen=True, slots=True)
class Resource:
    """One observed resource or container, normalized at the edge.

    ``tags`` is the resource's own key/value metadata whatever the provider
    called it (AWS tags, GCP labels and tags, Kubernetes labels). ``parent``
    is the id of the container it sits in (OU, account, VPC, folder, project,
    cluster, namespace). ``name_signal`` marks containers whose *name* is a
    declaration of environment (an OU or folder called "Production").
    ``declared`` is an environment given by configuration (an explicit
    account or OU map, a cluster's configured environment).
    ``scope`` is the unit a scanner lists at once (an account+region, a
    cluster, an organization); staleness is tracked per scope.
    """

    id: str
    provider: str
    kind: str
    name: str
    parent: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    scope: str = ""
    region: str = ""
    name_signal: bool = False
    declared: str | None = None
    aliases: tuple[str, ...] = ()
    #: a display path for containers (an OU path such as /Root/Production)
    path: str = ""
    #: what decides whether a destructive change can be undone (deletion protection, backups, versioning,
    #: reclaim policy...), JSON-able; keys by kind in docs/recovery.md, ``unreadable`` lists keys a scan could not
    #: read. A missing key is not known, and is never taken as recoverable
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScanError:
    """A failure of one scope of a scan. ``hint`` says what to do about it."""

    scope: str
    message: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What one source's scan saw. ``complete`` is False when any scope failed:
    an incomplete result removes nothing, and the labels of the source's stored
    resources it lacks (their listing failed) may only tighten, never relax."""

    source: str
    resources: list[Resource]
    errors: list[ScanError] = field(default_factory=list)
    scopes: frozenset[str] = frozenset()

    @property
    def complete(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class Evidence:
    signal: str
    environment: str
    source: str
    detail: str

    def as_dict(self) -> EvidenceRecord:
        return {"signal": self.signal, "environment": self.environment,
                "source": self.source, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of resolving one resource's signals."""

    environment: str
    decided_by: str
    conflict: bool
    evidence: tuple[Evidence, ...]
    #: the earliest expiry of any override that took part; the label must be
    #: recomputed once that moment passes.
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Override:
    target: str
    environment: str
    reason: str
    author: str
    created_at: datetime
    expires_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now
