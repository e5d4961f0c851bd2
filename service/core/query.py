"""The one query layer behind the CLI, HTTP API and MCP server.

Everything an interface answers about a target comes from here, so the
label JSON, fail-closed rules and staleness read the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from envlabel.config import Config
from envlabel.errors import TargetError
from envlabel.labelers.resolve import Labeler
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import UNKNOWN, Resolution
from envlabel.records import LabelRecord
from envlabel.service.core.clock import utcnow
from envlabel.store.codec import parse_ts, ts
from envlabel.store.records import LabelView, StoredLabel
from envlabel.store.sql import Store
from envlabel.targets import parse_target


@dataclass
class Query:
    """Bound to one config and store; cheap to build, safe to share between threads."""

    config: Config
    store: Store

    def __post_init__(self) -> None:
        self.taxonomy = Taxonomy.from_config(self.config)

    def label(self, raw_target: str, now: datetime | None = None) -> LabelRecord:
        """The label JSON of DESIGN.md for ``raw_target`` (raises TargetError if malformed)."""
        target = parse_target(raw_target)
        return self.answer_view(raw_target, target.provider, self.store.label_view(target.id), now or utcnow())

    def labels(self, raw_targets: Sequence[str], now: datetime | None = None) -> list[LabelRecord]:
        """The label JSON of each target, in order, from one store read per 500 targets.

        Raises TargetError for the first malformed target, naming its index (``targets.3: ...``)."""
        parsed = []
        for i, raw in enumerate(raw_targets):
            try:
                parsed.append(parse_target(raw))
            except TargetError as exc:
                raise TargetError(f"targets.{i}: {exc}") from None
        views = self.store.label_views([t.id for t in parsed])
        now = now or utcnow()
        return [self.answer_view(raw, t.provider, views.get(t.id), now)
                for raw, t in zip(raw_targets, parsed, strict=True)]

    def answer_view(self, raw_target: str, provider: str, view: LabelView | None, now: datetime) -> LabelRecord:
        """The label JSON from a :class:`LabelView` (None: never seen): the hot path agents call before
        every action reads only what the answer shows."""
        if view is None:
            return not_found(raw_target, provider)
        if view.tombstoned or view.environment is None or (view.valid_until is not None and view.valid_until <= now):
            # gone, not labeled yet, or an override it relied on has expired: the full read (rare)
            return self.answer(raw_target, provider, self.store.get(view.id), now)
        observed = parse_ts(view.observed_at)
        return view_json(raw_target, view, observed is not None and now - observed > self.config.stale_after)

    def answer(self, raw_target: str, provider: str, stored: StoredLabel | None, now: datetime) -> LabelRecord:
        """The label JSON of a target from what the store holds for it (None: never seen)."""
        if stored is None or stored.tombstoned_at is not None:
            return not_found(raw_target, provider, stored)
        resolution = stored.resolution
        if resolution is None or (resolution.valid_until is not None and resolution.valid_until <= now):
            resolution = self.relabel_one(stored, now)
        return label_json(raw_target, stored, resolution, self.is_stale(stored, now))

    def is_stale(self, stored: StoredLabel, now: datetime) -> bool:
        return now - stored.observed_at > self.config.stale_after

    def relabel_one(self, stored: StoredLabel, now: datetime) -> Resolution:
        """Label one resource afresh (an override on its path expired since the last pass)."""
        containers = {}
        parent = stored.resource.parent
        while parent is not None and parent not in containers:
            above = self.store.get(parent)
            if above is None:
                break
            containers[parent] = above.resource
            parent = above.resource.parent
        overrides = {t: o for t, o in self.store.overrides().items() if o.active(now)}
        return Labeler(self.taxonomy, containers, overrides).label(stored.resource)


def not_found(raw_target: str, provider: str, stored: StoredLabel | None = None) -> LabelRecord:
    body: LabelRecord = {
        "target": raw_target, "found": False, "environment": UNKNOWN, "authoritative": False,
        "decided_by": "none", "conflict": False, "stale": False, "observed_at": None,
        "provider": provider, "kind": None, "name": None, "parent": None, "evidence": [],
    }
    if stored is not None and stored.tombstoned_at is not None:
        body["kind"], body["name"], body["parent"] = stored.resource.kind, stored.resource.name, stored.resource.parent
        body["gone_at"] = ts(stored.tombstoned_at)
    return body


def label_json(raw_target: str, stored: StoredLabel, resolution: Resolution | None, stale: bool) -> LabelRecord:
    r = stored.resource
    return view_json(raw_target, LabelView(
        r.id, r.provider, r.kind, r.name, r.parent, stored.tombstoned_at is not None,
        resolution.environment if resolution else None, resolution.decided_by if resolution else None,
        resolution.conflict if resolution else False,
        [e.as_dict() for e in resolution.evidence] if resolution else [],
        resolution.valid_until if resolution else None, ts(stored.observed_at)), stale)


def view_json(raw_target: str, view: LabelView, stale: bool) -> LabelRecord:
    environment = view.environment or UNKNOWN
    return {
        "target": raw_target,
        "found": True,
        "environment": environment,
        "authoritative": environment != UNKNOWN and not stale,
        "decided_by": view.decided_by or "none",
        "conflict": view.conflict,
        "stale": stale,
        "observed_at": view.observed_at,
        "provider": view.provider,
        "kind": view.kind,
        "name": view.name,
        "parent": view.parent,
        "id": view.id,
        "evidence": view.evidence,
    }
