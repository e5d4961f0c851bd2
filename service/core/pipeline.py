"""One discovery + labeling pass per source, committed atomically.

``commit_scan`` writes resources and labels: it stores what a
scan saw, tombstones what a *complete* scan did not see, refreshes the scope
times that staleness is measured from, and relabels the estate, writing only
labels that changed (with history). A crash anywhere before the commit leaves
the previous state intact. Between scans, ``commit_changes`` applies what a
Kubernetes watch saw (one event, or a relist of one kind) the same way.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from envlabel.config import Config, Source
from envlabel.labelers.resolve import Labeler
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanError, ScanResult
from envlabel.service.core.clock import utcnow
from envlabel.service.core.gc_pause import gc_paused_if_large
from envlabel.store.codec import digest
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
    seconds: float = 0.0


def relabel(tx: Transaction, taxonomy: Taxonomy, now: datetime, scan_id: int | None,
            targets: Sequence[str] | None = None) -> tuple[int, Counter[str]]:
    """Recompute labels (all, or ``targets``) and write those that changed. Returns (changes, per environment)."""
    labeler = Labeler(taxonomy, tx.containers(targets), tx.active_overrides(now))
    changed = 0
    environments: Counter[str] = Counter()
    for batch in tx.iter_encoded_labels(targets=targets):
        changes: list[LabelChange] = []
        for resource, current in batch:
            resolution = labeler.label(resource)
            environments[resolution.environment] += 1
            # compared as stored: equal rows are an unchanged label (evidence, expiry and all)
            encoded = EncodedLabel.of(resolution)
            if encoded != current:
                changes.append(LabelChange(resource.id, current.environment if current else None, resolution,
                                           encoded))
        if changes:
            tx.write_labels(changes, now, scan_id)
            changed += len(changes)
    return changed, environments


def relabel_subtree(store: Store, taxonomy: Taxonomy, roots: Sequence[str], now: datetime | None = None,
                    scan_id: int | None = None) -> int:
    """Relabel ``roots`` and everything below them (after an override or a watch event). Returns changes."""
    now = now or utcnow()
    with store.transaction() as tx:
        changes, _ = relabel(tx, taxonomy, now, scan_id, targets=tx.subtree(roots))
    return changes


def commit_scan(store: Store, taxonomy: Taxonomy, result: ScanResult, started_at: datetime,
                now: datetime | None = None, *, fence: Fence | None = None) -> ScanSummary:
    """Commit what a scan saw. With a ``fence`` (a replica's leadership token) the commit happens only while
    the token is current; otherwise it raises :class:`envlabel.store.sql.FencedOut` and writes nothing."""
    now = now or utcnow()
    clock = time.perf_counter()
    # a large pass allocates millions of acyclic records: keep the collector out of it (small commits skip the
    # full collection that starts a pause)
    with gc_paused_if_large(result.resources), store.transaction(bulk=True) as tx:
        if fence is not None:
            tx.hold_fence(fence)
        scan_id = tx.record_scan(result.source, started_at, now, result.complete, result.errors)
        seen, written = tx.upsert_resources(result.source, result.resources, now)
        # An incomplete scan removes nothing: what it did not see may only be out of reach.
        removed = tx.tombstone(result.source, seen, now, scan_id) if result.complete else []
        # A complete scan listed every scope its live resources sit in, declared or not; a failed scope is not
        # touched, so what it holds goes stale instead of disappearing.
        tx.touch_scopes(result.source, result.scopes | tx.live_scopes(result.source) if result.complete
                        else result.scopes, now)
        changes, _ = relabel(tx, taxonomy, now, scan_id)
        tx.finish_scan(scan_id, len(seen), changes, len(removed))
    return ScanSummary(result.source, result.complete, len(seen), written, len(removed), changes,
                       Counter(store.environment_counts(result.source)), list(result.errors),
                       time.perf_counter() - clock)


def commit_changes(store: Store, taxonomy: Taxonomy, source: str, resources: Sequence[Resource],
                   *, gone: Sequence[str] = (), kind: str | None = None, now: datetime | None = None) -> int:
    """Apply what a watch saw between scans in one transaction: upsert ``resources``, tombstone ``gone``
    and, for a relist of one ``kind``, its live resources the relist lacked; relabel what sits below.
    Returns the number of label changes."""
    now = now or utcnow()
    with store.transaction() as tx:
        # most events and relists repeat what is stored (a status update, an unchanged object): relabel only
        # below what changed
        stored = tx.live_digests([r.id for r in resources])
        changed = [r.id for r in resources if stored.get(r.id) != digest(r)]
        seen, _ = tx.upsert_resources(source, resources, now)
        doomed = set(gone)
        if kind is not None:
            doomed |= tx.live_ids(source, kind) - seen
        removed = tx.tombstone(source, tx.live_ids(source) - doomed, now, None) if doomed else []
        changes = 0
        if changed or removed:
            changes, _ = relabel(tx, taxonomy, now, None, targets=tx.subtree([*changed, *removed]))
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
    """Scan one source and commit what it saw."""
    started = utcnow()
    return commit_scan(store, Taxonomy.from_config(config), scan_source(source, scan), started)
