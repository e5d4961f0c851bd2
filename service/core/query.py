"""The one query layer behind the CLI, HTTP API and MCP server.

Everything an interface answers about a target comes from here, so the
label JSON, fail-closed rules and staleness read the same everywhere.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple, cast

import orjson

from envlabel.config import Config
from envlabel.errors import StoreError, TargetError
from envlabel.labelers.resolve import Labeler
from envlabel.labelers.stems import Stemmer
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import UNKNOWN, Resolution
from envlabel.records import LabelRecord, LookalikeRecord
from envlabel.service.core.clock import utcnow
from envlabel.store.codec import parse_ts, ts
from envlabel.store.lookalikes import Lookalike
from envlabel.store.records import LabelView, StoredLabel
from envlabel.store.sql import Store
from envlabel.targets import Target, parse_target

#: lookalikes a label lists at most
LOOKALIKES = 10
#: answers a Query keeps while the store is unchanged (about 3 KiB each with their lookalikes)
KEPT_ANSWERS = 4096
#: targets remembered as asked once, so that the next ask keeps the answer
ASKED_TARGETS = 8 * KEPT_ANSWERS
_LAST_SEGMENT = re.compile(r"[/:]")
#: an answer that only a change to the store ends (never seen, gone)
_NEVER = datetime.max.replace(tzinfo=UTC)


class _Kept(NamedTuple):
    """An answer (as :func:`kept_form` keeps it), the generation it was read in, and the moments between which it
    stays the answer. The answer is kept as its JSON text (orjson: ~6 us to write, ~7 us to read back, about what
    copying its dicts and lists costs), so a kept answer is a tuple of atoms that the cyclic collector stops
    tracking at its first pass: thousands kept cost its full passes nothing. Kept as dicts and lists, they made
    those passes frequent and slow (POST /v1/labels x100 p99 14 -> 110 ms)."""

    body: bytes
    generation: int
    since: datetime
    until: datetime


class KeptAnswers:
    """The answers one Query keeps for every thread, up to KEPT_ANSWERS, while the store is unchanged.

    Each thread reads through a reader connection of its own, whose change counter (SQLite ``data_version``)
    moves once any other connection commits; each thread remembers the last value it saw. The first call on a
    thread, or one whose counter moved, ends the generation: everything kept is dropped, and an answer read in an
    earlier generation (by a thread that was reading while the store changed) is not kept. So whichever thread asks
    first after a commit, no answer read before it is given again."""

    def __init__(self) -> None:
        self._seen = threading.local()
        self._lock = threading.Lock()
        self.generation = 0
        #: oldest first (an OrderedDict: dropping a plain dict's first entry again and again scans the holes the
        #: earlier ones left, ~10 us each at this size)
        self.kept: OrderedDict[str, _Kept] = OrderedDict()
        #: targets asked once (in any generation): an answer is kept when it is asked for again, so a target
        #: asked once costs a set entry, not a copy of its answer nor a look at the change counter (most targets of
        #: a sweep are asked once)
        self.asked: set[str] = set()

    def current(self, counter: tuple[int, int]) -> int:
        """The generation an answer read now belongs to, after ending the last one if the store changed as this
        thread's reader connection sees it (``counter``)."""
        if getattr(self._seen, "counter", None) != counter:
            with self._lock:
                self.generation += 1
                self.kept.clear()
            self._seen.counter = counter
        return self.generation

    def asked_before(self, raw_target: str) -> bool:
        """Whether ``raw_target`` was asked about before (its answer may be kept); if not, it is from now on."""
        if raw_target in self.kept or raw_target in self.asked:
            return True
        if len(self.asked) >= ASKED_TARGETS:
            self.asked.clear()
        self.asked.add(raw_target)
        return False

    def get(self, raw_target: str, generation: int, now: datetime) -> LabelRecord | None:
        """A copy of the answer kept for ``raw_target`` if it is still the answer at ``now``, else None."""
        kept = self.kept.get(raw_target)
        if kept is None or kept.generation != generation or not kept.since <= now < kept.until:
            return None
        return fresh_copy(kept.body)

    def keep(self, raw_target: str, body: LabelRecord, generation: int, now: datetime, until: datetime) -> None:
        """Keep a copy of ``body``, read in ``generation`` at ``now``, until ``until`` (not at all if that is
        ``now``, or if the generation ended while it was being read)."""
        if until <= now:
            return
        kept = _Kept(kept_form(body), generation, now, until)
        with self._lock:
            if generation != self.generation:
                return
            if len(self.kept) >= KEPT_ANSWERS and raw_target not in self.kept:
                self.kept.popitem(last=False)
            self.kept[raw_target] = kept


@dataclass
class Query:
    """Bound to one config and store; cheap to build, safe to share between threads."""

    config: Config
    store: Store
    #: whether :meth:`label` and :meth:`labels` list lookalikes (off only to measure what they cost)
    lookalikes: bool = True

    def __post_init__(self) -> None:
        self.taxonomy = Taxonomy.from_config(self.config)
        self.stemmer = Stemmer.of(self.taxonomy)
        #: the stems of names asked about, remembered (agents check the same targets again and again)
        self.stem_of = lru_cache(maxsize=65_536)(self.stemmer)
        self._stems_ready = False
        self._answers = KeptAnswers()
        #: whether the store has a change counter (else nothing is kept, and no target is remembered)
        self._keeping = self.store.dialect.change_counter_sql is not None
        # the stored stems made this taxonomy's (a synonym renamed in the config re-stems the store); a store that
        # does not answer yet is not this constructor's to report: the first lookalike read tries again, and says why
        with suppress(StoreError):
            self.ensure_stems()

    def ensure_stems(self) -> None:
        """Re-stem the store if its stems were computed from other words than this taxonomy's (once)."""
        if not self._stems_ready:
            self.store.ensure_stems(self.stemmer.fingerprint, self.stemmer)
            self._stems_ready = True

    def label(self, raw_target: str, now: datetime | None = None) -> LabelRecord:
        """The label JSON of DESIGN.md for ``raw_target`` (raises TargetError if malformed), with its lookalikes.

        An answer is kept from the second time its target is asked (up to KEPT_ANSWERS, see :class:`KeptAnswers`)
        and given again while nothing was committed to the store since it was read (the store's change counter,
        asked on every call about a target asked before) and until the moment it would change by itself: the label
        turning stale, or an override it relied on expiring. Agents ask about the same targets again and again; a
        kept answer costs ~10 us instead of two indexed reads (~60 us)."""
        now = now or utcnow()
        # a first ask is read and not kept, so it needs no change counter (2.8 us): only a target asked before may
        # be answered from what is kept, and only after the counter says the store did not change since
        generation = self.generation() if self._keeping and self._answers.asked_before(raw_target) else None
        if generation is not None and (body := self._answers.get(raw_target, generation, now)) is not None:
            return body
        target = parse_target(raw_target)
        view = self.store.label_view(target.id)
        body = self.answer_view(raw_target, target.provider, view, now)
        if self.lookalikes:
            self.ensure_stems()
            stem, kind, other_than, exclude = self.twin_key(body, target)
            rows = self.store.lookalike_rows(stem, kind, exclude, LOOKALIKES, other_than=other_than,
                                             ranking=self.taxonomy.environments)
            body["lookalikes"] = [lookalike_json(row) for row in rows]
        if generation is not None:
            self._answers.keep(raw_target, body, generation, now, self.answer_until(view, body, now))
        return body

    def labels(self, raw_targets: Sequence[str], now: datetime | None = None) -> list[LabelRecord]:
        """The label JSON of each target, in order, from one store read per 500 targets not kept (see
        :meth:`label`).

        Raises TargetError for the first malformed target, naming its index (``targets.3: ...``)."""
        now = now or utcnow()
        before = [self._keeping and self._answers.asked_before(raw) for raw in raw_targets]
        generation = self.generation() if any(before) else None
        bodies: list[LabelRecord | None] = []
        asked: list[tuple[int, str, Target]] = []  # the targets not answered from what is kept: (index, raw, parsed)
        for i, raw in enumerate(raw_targets):
            body = self._answers.get(raw, generation, now) if generation is not None and before[i] else None
            bodies.append(body)
            if body is None:
                try:
                    asked.append((i, raw, parse_target(raw)))
                except TargetError as exc:
                    raise TargetError(f"targets.{i}: {exc}") from None
        views = self.store.label_views([t.id for _, _, t in asked])
        read = [self.answer_view(raw, t.provider, views.get(t.id), now) for _, raw, t in asked]
        if self.lookalikes:
            self.add_lookalikes(read, [t for _, _, t in asked])
        for (i, raw, t), body in zip(asked, read, strict=True):
            bodies[i] = body
            if generation is not None and before[i]:
                self._answers.keep(raw, body, generation, now, self.answer_until(views.get(t.id), body, now))
        return [body for body in bodies if body is not None]

    def generation(self) -> int | None:
        """The generation of kept answers an answer read now belongs to (see :class:`KeptAnswers`); None: the store
        has no cheap change counter (PostgreSQL, in memory), so nothing is kept."""
        counter = self.store.change_counter()
        return None if counter is None else self._answers.current(counter)

    def answer_until(self, view: LabelView | None, body: LabelRecord, now: datetime) -> datetime:
        """Until when ``body``, answered at ``now`` from ``view``, stays the answer if the store does not change:
        until the label turns stale or an override it relied on expires; ``now`` (not kept) for one relabeled
        afresh, which other overrides expiring could change."""
        if view is None or view.tombstoned:
            return _NEVER
        if view.environment is None or (view.valid_until is not None and view.valid_until <= now):
            return now
        until = _NEVER
        if not body["stale"] and (observed := parse_ts(view.observed_at)) is not None:
            until = observed + self.config.stale_after
        return until if view.valid_until is None else min(until, view.valid_until)

    def add_lookalikes(self, bodies: Sequence[LabelRecord], targets: Sequence[Target]) -> None:
        """Each label's lookalikes, from one read per distinct (stem, kind, environment) among them."""
        self.ensure_stems()
        keys = [self.twin_key(body, target) for body, target in zip(bodies, targets, strict=True)]
        groups: dict[tuple[str, str | None, str | None], set[str]] = {}
        for stem, kind, other_than, exclude in keys:
            groups.setdefault((stem, kind, other_than), set()).add(exclude)
        found: dict[tuple[str, str | None, str | None], list[Any]] = {}
        for (stem, kind, other_than), excluded in groups.items():
            # each label leaves out itself alone: read enough that every one of them still has LOOKALIKES
            found[stem, kind, other_than] = self.store.lookalike_rows(
                stem, kind, None, LOOKALIKES + len(excluded), other_than=other_than,
                ranking=self.taxonomy.environments)
        for body, (stem, kind, other_than, exclude) in zip(bodies, keys, strict=True):
            rows = [row for row in found[stem, kind, other_than] if row[0] != exclude][:LOOKALIKES]
            body["lookalikes"] = [lookalike_json(row) for row in rows]

    def twin_key(self, body: LabelRecord, target: Target) -> tuple[str, str | None, str | None, str]:
        """What a label's lookalikes are read by: (stem, kind or None for any, the environment they must differ
        from or None for any, the id they must not be). A never-seen target is named by its id's last segment."""
        name, kind = body.get("name"), body.get("kind")
        if name is None:
            name, kind = name_of_id(target.id), None
        environment = body["environment"]
        return self.stem_of(name), kind, None if environment == UNKNOWN else environment, body.get("id", target.id)

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


def kept_form(body: LabelRecord) -> bytes:
    """A label JSON as it is kept (see :class:`_Kept`): its JSON text."""
    return orjson.dumps(body)


def fresh_copy(kept: bytes) -> LabelRecord:
    """The label JSON of a :func:`kept_form`, new objects all the way down: its caller may change it."""
    return cast(LabelRecord, orjson.loads(kept))


def name_of_id(target_id: str) -> str:
    """The name a never-seen target most likely has: its id's last segment (an ARN's resource part after the
    last ``/`` or ``:``, a Kubernetes or GCP id's last path segment; an account id is itself).

    >>> name_of_id("arn:aws:rds:us-east-1:222222222222:db:orders-db"), name_of_id("k8s://c/ns/deployments/api")
    ('orders-db', 'api')
    """
    if target_id.startswith("arn:"):
        return _LAST_SEGMENT.split(target_id.split(":", 5)[-1])[-1]
    return target_id.rstrip("/").rsplit("/", 1)[-1]


def lookalike_json(row: Lookalike | Sequence[Any]) -> LookalikeRecord:
    """A lookalike as a label lists it, from a :class:`Lookalike` or a row of ``Store.lookalike_rows``."""
    target, kind, name, environment = row[0], row[1], row[2], row[3]
    where = "with no known environment" if environment == UNKNOWN else f"in {environment}"
    return {"target": target, "environment": environment, "kind": kind, "name": name,
            "note": f"{name} also exists {where}: {target}"}


def not_found(raw_target: str, provider: str, stored: StoredLabel | None = None) -> LabelRecord:
    body: LabelRecord = {
        "target": raw_target, "found": False, "environment": UNKNOWN, "authoritative": False,
        "decided_by": "none", "conflict": False, "stale": False, "observed_at": None,
        "provider": provider, "kind": None, "name": None, "parent": None, "evidence": [], "facts": {},
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
        resolution.valid_until if resolution else None, ts(stored.observed_at), r.facts), stale)


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
        "facts": dict(view.facts),
    }
