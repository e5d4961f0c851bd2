"""One discovery + labeling pass per source, committed atomically.

``commit_scan`` writes resources and labels: it stores what a
scan saw, tombstones what a *complete* scan did not see, refreshes the scope
times that staleness is measured from, and relabels the estate, writing only
labels that changed (with history). A crash anywhere before the commit leaves
the previous state intact. Between scans, ``commit_changes`` applies what a
Kubernetes watch saw (one event, or a relist of one kind) the same way.

An incomplete scan *holds* the labels of the source's live resources it did not
see (their own listing failed, so their own tags are not known now): such a
label only ever tightens in that commit, never relaxes, whatever its parents
did. A namespace relabeled staging while its deployments could not be listed
leaves the deployments production until a complete scan (or a watch event for
them) sees them; a namespace that became production tightens them at once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from datetime import datetime

from envlabel.config import Config, Source
from envlabel.labelers.resolve import Chain, Labeler, Signals, resolve_chain
from envlabel.labelers.stems import Stemmer
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import UNKNOWN, Override, Resolution, Resource, ScanError, ScanResult
from envlabel.service.core.clock import utcnow
from envlabel.service.core.gc_pause import LARGE_PASS, gc_paused_if_large
from envlabel.store.codec import digest, evidence_item, ts
from envlabel.store.lookalikes import restem
from envlabel.store.records import EncodedLabel, Fence, LabelChange
from envlabel.store.sql import Store
from envlabel.store.transaction import Transaction


@dataclass
class ScanSummary:
    source: str
    complete: bool
    resources: int
    written: int
    removed: int
    label_changes: int
    environments: Counter[str] = field(default_factory=Counter)
    errors: list[ScanError] = field(default_factory=list)
    #: the commit's seconds (what ``commit_scan`` timed)
    seconds: float = 0.0
    #: label changes this (incomplete) scan did not write: of resources it could not see, not making them stricter
    held: int = 0
    #: the discovery's seconds before the commit (set by :func:`run_source`; 0 for a commit of a given result)
    discovery_seconds: float = 0.0

    @property
    def total_seconds(self) -> float:
        """The pass's real duration: discovery (listing the provider, by far the longer part) plus the commit."""
        return self.discovery_seconds + self.seconds


#: which resources' labels a commit may only tighten (their own observation is not current)
Hold = Callable[[Resource], bool]


@dataclass(frozen=True, slots=True)
class Relabeled:
    """What one relabel wrote: ``changed`` labels, ``held`` changes of held labels it did not write (they
    would not have made them stricter), and the resulting labels per environment."""

    changed: int
    held: int
    environments: Counter[str]


def decided_rank(taxonomy: Taxonomy, environment: str) -> int:
    """How strictly a label is decided: 0 is the strictest. ``unknown`` and an environment the config no
    longer names rank 0 too, because the check decides both as the strictest (fail closed)."""
    if environment == UNKNOWN or environment not in taxonomy.environments:
        return 0
    return taxonomy.rank(environment)


def tightens(taxonomy: Taxonomy, before: str, after: str) -> bool:
    """Whether a label going from ``before`` to ``after`` is decided more strictly than it was."""
    return decided_rank(taxonomy, after) < decided_rank(taxonomy, before)


def relabel(tx: Transaction, taxonomy: Taxonomy, now: datetime, scan_id: int | None,
            targets: Sequence[str] | None = None) -> tuple[int, Counter[str]]:
    """Recompute labels (all, or ``targets``) and write those that changed. Returns (changes, per environment)."""
    done = relabel_holding(tx, taxonomy, now, scan_id, targets=targets)
    return done.changed, done.environments


def relabel_holding(tx: Transaction, taxonomy: Taxonomy, now: datetime, scan_id: int | None,
                    *, targets: Sequence[str] | None = None, hold: Hold | None = None) -> Relabeled:
    """:func:`relabel`, except that the label of a resource ``hold`` names changes only if it tightens.

    A held resource's own tags are as last observed, while its parents may have been observed just now:
    mixing the two could relax it on evidence that is out of date (its own new production tag not seen),
    so only a stricter answer, which is always safe, is written."""
    labeler = Labeler(taxonomy, tx.containers(targets), tx.active_overrides(now))
    encode = LabelEncoder()
    parts = labeler.parts
    changed = held = 0
    environments: Counter[str] = Counter()
    for batch in tx.iter_encoded_labels(targets=targets):
        changes: list[LabelChange] = []
        for resource, current in batch:
            own, chain = parts(resource)
            resolution = resolve_chain(taxonomy, own, chain)
            # compared as stored: equal rows are an unchanged label (evidence, expiry and all)
            encoded = encode(resolution, own, chain)
            if encoded == current:
                environments[resolution.environment] += 1
            elif (current is not None and hold is not None and hold(resource.resource())
                  and not tightens(taxonomy, current.environment, resolution.environment)):
                environments[current.environment] += 1
                held += 1
            else:
                environments[resolution.environment] += 1
                changes.append(LabelChange(resource.id, current.environment if current else None, resolution,
                                           encoded))
        if changes:
            tx.write_labels(changes, now, scan_id)
            changed += len(changes)
    return Relabeled(changed, held, environments)


class LabelEncoder:
    """A resolution as stored (:meth:`EncodedLabel.of`), made from the parts it was resolved from: the evidence a
    container hands down is encoded once per chain, not once per resource below it (a relabel encodes a million
    labels that repeat their ancestors' evidence)."""

    def __init__(self) -> None:
        #: id of a chain -> (the chain, kept so the id stays its own; its evidence entries as JSON)
        self._chains: dict[int, tuple[Chain, str]] = {}

    def __call__(self, resolution: Resolution, own: Signals, chain: Chain) -> EncodedLabel:
        if own.override is not None:  # the override's evidence alone (and the names): not own + chain + names
            return EncodedLabel.of(resolution)
        known = self._chains.get(id(chain))
        if known is None or known[0] is not chain:
            known = self._chains[id(chain)] = (chain, ",".join([evidence_item(e) for e in chain.evidence]))
        text = known[1]
        if own.tags:
            mine = ",".join([evidence_item(e) for e in own.tags])
            text = f"{mine},{text}" if text else mine
        if own.names:
            names = ",".join([evidence_item(e) for e in own.names])
            text = f"{text},{names}" if text else names
        until = resolution.valid_until
        return EncodedLabel(resolution.environment, resolution.decided_by, int(resolution.conflict), f"[{text}]",
                            ts(until) if until else None)


class StreamLabeler:
    """Labels a first load's resources as they stream in (the ``label`` of ``Transaction.upsert_resources``), so the
    relabel after it reads back only what could not be labeled then (:meth:`relabel_rest`).

    A resource is labeled in the stream only when every container above it came before it: then its chain is the one
    a relabel of the whole store computes, from the same containers and overrides. Scanners list an account before
    its VPCs and a VPC before what runs in it. Anything else (a child before its parent, a parent never observed, a
    parent that came too long before its first child) is left to the relabel: labeling it later is always right,
    only slower.

    What it keeps to find parents: every resource that has had a child in the stream (the labeler's containers),
    those of a kind that has had children (up to ``keep`` of them: accounts, VPCs, namespaces, folders), and the
    last ``window`` to ``2 * window`` resources, so the memory of a million-resource load stays small.
    """

    WINDOW = 10_000
    KEEP = 50_000

    def __init__(self, taxonomy: Taxonomy, overrides: Mapping[str, Override]) -> None:
        self.taxonomy = taxonomy
        self.overrides = overrides
        #: containers whose chain is exact (every one above them came before them); the labeler walks these only
        self._containers: dict[str, Resource] = {}
        self._labeler = Labeler(taxonomy, self._containers, overrides)
        self._encode = LabelEncoder()
        #: recent resources, and kept ones of container kinds: id -> (resource, whether its chain is exact)
        self._recent: dict[str, tuple[Resource, bool]] = {}
        self._older: dict[str, tuple[Resource, bool]] = {}
        self._kept: dict[str, tuple[Resource, bool]] = {}
        self._container_kinds: set[str] = set()
        self._window, self._keep = self.WINDOW, self.KEEP
        #: the resources left to the relabel, in stream order
        self.deferred: list[str] = []
        self.environments: Counter[str] = Counter()

    @property
    def labeled(self) -> int:
        return sum(self.environments.values())

    def __call__(self, resource: Resource) -> EncodedLabel | None:
        parent = resource.parent
        exact = parent is None or parent in self._containers or self._promote(parent)
        encoded = None
        if exact:
            own, chain = self._labeler.parts(resource)
            resolution = resolve_chain(self.taxonomy, own, chain)
            encoded = self._encode(resolution, own, chain)
            self.environments[resolution.environment] += 1
        else:
            self.deferred.append(resource.id)
        if resource.kind in self._container_kinds and len(self._kept) < self._keep:
            self._kept[resource.id] = (resource, exact)
        else:
            if len(self._recent) >= self._window:
                self._older, self._recent = self._recent, {}
            self._recent[resource.id] = (resource, exact)
        return encoded

    def _promote(self, parent: str) -> bool:
        """Whether ``parent`` came before, with an exact chain: then it becomes one of the labeler's containers."""
        found = self._recent.get(parent) or self._older.get(parent) or self._kept.get(parent)
        if found is None or not found[1]:
            return False
        container = found[0]
        self._containers[parent] = container
        self._container_kinds.add(container.kind)
        return True

    def relabel_rest(self, tx: Transaction, now: datetime, scan_id: int | None) -> Relabeled:
        """Label what the stream left (``deferred``) and return what the whole load labeled. When it left most of
        the estate (a scanner listing children first), one relabel of everything costs less than reading the rest
        back in pieces; what the stream labeled compares equal there and is not written again."""
        if not self.deferred:
            return Relabeled(self.labeled, 0, self.environments)
        if len(self.deferred) * 2 > self.labeled + len(self.deferred):
            done = relabel_holding(tx, self.taxonomy, now, scan_id)
            return Relabeled(self.labeled + done.changed, 0, done.environments)
        done = relabel_holding(tx, self.taxonomy, now, scan_id, targets=sorted(self.deferred))
        return Relabeled(self.labeled + done.changed, 0, self.environments + done.environments)


def relabel_subtree(store: Store, taxonomy: Taxonomy, roots: Sequence[str], now: datetime | None = None,
                    scan_id: int | None = None) -> int:
    """Relabel ``roots`` and everything below them (after an override or a watch event). Returns changes."""
    now = now or utcnow()
    with store.transaction() as tx:
        changes, _ = relabel(tx, taxonomy, now, scan_id, targets=tx.subtree(roots))
    return changes


def stems_of(tx: Transaction, taxonomy: Taxonomy) -> Stemmer:
    """The taxonomy's lookalike stems, the stored ones made its own first (re-stemmed in ``tx`` if they were
    computed from other words), so every stem in the store comes from the words ``meta`` names."""
    stemmer = Stemmer.of(taxonomy)
    restem(tx, stemmer.fingerprint, stemmer)
    return stemmer


def commit_scan(store: Store, taxonomy: Taxonomy, result: ScanResult, started_at: datetime,
                now: datetime | None = None, *, fence: Fence | None = None) -> ScanSummary:
    """Commit what a scan saw. With a ``fence`` (a replica's leadership token) the commit happens only while
    the token is current; otherwise it raises :class:`envlabel.store.sql.FencedOut` and writes nothing."""
    now = now or utcnow()
    clock = time.perf_counter()
    # a large pass allocates millions of acyclic records: keep the collector out of it (small commits skip the
    # full collection that starts a pause)
    large = not isinstance(result.resources, Sized) or len(result.resources) >= LARGE_PASS
    with gc_paused_if_large(result.resources), store.transaction(bulk=True) as tx, \
            tx.first_load(large) as first:
        if fence is not None:
            tx.hold_fence(fence)
        scan_id = tx.record_scan(result.source, started_at, now, result.complete, result.errors)
        # into an empty store, resources are labeled as they are stored, parents first (StreamLabeler)
        streamed = StreamLabeler(taxonomy, tx.active_overrides(now)) if first else None
        seen, written = tx.upsert_resources(result.source, result.resources, now, stem=stems_of(tx, taxonomy),
                                             scan_id=scan_id, label=streamed)
        # An incomplete scan removes nothing: what it did not see may only be out of reach.
        # (Nor does the first commit into an empty store: everything live is what it just saw.)
        removed = tx.tombstone(result.source, seen, now, scan_id) if result.complete and not first else []
        # A complete scan listed every scope its live resources sit in, declared or not; a failed scope is not
        # touched, so what it holds goes stale instead of disappearing.
        tx.touch_scopes(result.source, result.scopes | tx.live_scopes(result.source) if result.complete
                        else result.scopes, now)
        # What an incomplete scan did not see is held: its own listing failed, so its parents' fresh records
        # may tighten its label but not relax it (README, "A failed scope changes nothing").
        unseen = frozenset() if result.complete or first else frozenset(tx.live_ids(result.source) - seen)
        done = streamed.relabel_rest(tx, now, scan_id) if streamed is not None else \
            relabel_holding(tx, taxonomy, now, scan_id, hold=(lambda r: r.id in unseen) if unseen else None)
        tx.finish_scan(scan_id, len(seen), done.changed, len(removed))
    # into an empty store, the relabel counted this source's resources and nothing else: no need to count again
    environments = done.environments if first else Counter(store.environment_counts(result.source))
    return ScanSummary(result.source, result.complete, len(seen), written, len(removed), done.changed,
                       environments, list(result.errors),
                       time.perf_counter() - clock, done.held)


def commit_changes(store: Store, taxonomy: Taxonomy, source: str, resources: Sequence[Resource],
                   *, gone: Sequence[str] = (), kind: str | None = None, now: datetime | None = None,
                   held_kinds: Collection[str] = ()) -> int:
    """Apply what a watch saw between scans in one transaction: upsert ``resources``, tombstone ``gone``
    and, for a relist of one ``kind``, its live resources the relist lacked; relabel what sits below.
    Labels of ``held_kinds`` (kinds whose own watch is not current) below may only tighten, as in an
    incomplete scan. Returns the number of label changes."""
    now = now or utcnow()
    with store.transaction() as tx:
        # most events and relists repeat what is stored (a status update, an unchanged object): relabel only
        # below what changed
        stored = tx.live_digests([r.id for r in resources])
        changed = [r.id for r in resources if stored.get(r.id) != digest(r)]
        seen, _ = tx.upsert_resources(source, resources, now, stem=stems_of(tx, taxonomy))
        doomed = set(gone)
        if kind is not None:
            doomed |= tx.live_ids(source, kind) - seen
        removed = tx.tombstone(source, tx.live_ids(source) - doomed, now, None) if doomed else []
        changes = 0
        if changed or removed:
            fresh = {r.id for r in resources}
            hold: Hold | None = ((lambda r: r.kind in held_kinds and r.id not in fresh) if held_kinds else None)
            changes = relabel_holding(tx, taxonomy, now, None, targets=tx.subtree([*changed, *removed]),
                                      hold=hold).changed
    return changes


def scan_source(source: Source, scan: Callable[[Source], ScanResult] | None = None) -> ScanResult:
    """Scan one source without committing. A scanner that raises is an incomplete scan of everything."""
    from envlabel.discovery import scanner_for

    try:
        return scan(source) if scan else scanner_for(source).scan()
    except Exception as exc:  # a scanner bug or an unreachable endpoint: record it, remove nothing
        return ScanResult(source.name, [], [ScanError(
            source.name, f"{type(exc).__name__}: {exc}",
            "check the source's endpoint and credentials; nothing was removed")])


def run_source(config: Config, store: Store, source: Source,
               scan: Callable[[Source], ScanResult] | None = None) -> ScanSummary:
    """Scan one source and commit what it saw; the summary times both (the scan's real duration)."""
    started, clock = utcnow(), time.perf_counter()
    result = scan_source(source, scan)
    discovery = time.perf_counter() - clock
    summary = commit_scan(store, Taxonomy.from_config(config), result, started)
    summary.discovery_seconds = discovery
    return summary
