"""Kubernetes watches: keep the store current between scans, one event at a time.

One thread per watched kind runs the informer loop: list the kind (applying
the difference to the store, so objects deleted while nobody watched are
tombstoned), then watch from the list's resourceVersion with bookmarks on.
Each event is committed on its own (``envlabel.service.core.pipeline.commit_changes``: one
transaction, the resource upserted or tombstoned and everything below it
relabeled), so a changed namespace label is visible within a second. A 410
(the API server compacted past our resourceVersion) means we missed events:
list again and carry on. Any other failure is logged, kept in ``errors`` and
retried with backoff; it never removes anything. While a kind is not listed
and watched (before its first list, or failing), its objects' labels only
tighten when their parents change (``held_kinds``), as in an incomplete scan.

Recovery facts stay current too: claims, volumes and storage classes are
watched as full objects, and an event on a volume or class carries the claims
whose ``reclaim_policy`` it changed (``WatchEvent.related``), committed with it.
Their commits are serialised and each claim's facts derived again from the
scanner's volume index at commit time (:meth:`KubernetesWatcher._commit`), so a
claim's stored policy is never older than the last volume event applied (a
volume patched from Retain to Delete must not leave the claim saying Retain).

``stop()`` is prompt: it shuts the open watch connections down instead of
waiting for the server's timeout.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from envlabel.config import Config, KubernetesSource
from envlabel.discovery.kubernetes import (
    VOLUME_KINDS,
    KindSpec,
    KubernetesScanFailure,
    KubernetesScanner,
    ResourceExpired,
    WatchEvent,
    WatchStream,
    cluster_resource,
)
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanError
from envlabel.service.core.pipeline import commit_changes
from envlabel.store.sql import Store

log = logging.getLogger("envlabel.watch")


@dataclass
class WatchStats:
    """Counters per kind label (``deployments.apps``)."""

    events: Counter[str] = field(default_factory=Counter)
    relists: Counter[str] = field(default_factory=Counter)
    label_changes: int = 0
    errors: list[ScanError] = field(default_factory=list)


class KubernetesWatcher:
    """Watches every kind a Kubernetes source scans and applies the events to ``store``."""

    def __init__(self, config: Config, store: Store, source: KubernetesSource,
                 scanner: KubernetesScanner | None = None, *, timeout_seconds: int = 300,
                 max_backoff: float = 30.0) -> None:
        self.store = store
        self.source = source
        self.taxonomy = Taxonomy.from_config(config)
        self.scanner = scanner or KubernetesScanner(source)
        self.timeout_seconds = timeout_seconds
        self.max_backoff = max_backoff
        self.stats = WatchStats()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        #: held over each commit of claims, volumes and classes (see _commit)
        self._volume_lock = threading.Lock()
        self._streams: set[WatchStream] = set()
        self._threads: list[threading.Thread] = []
        self._synced: dict[KindSpec, threading.Event] = {k: threading.Event() for k in self.scanner.kinds}
        self._tried: dict[KindSpec, threading.Event] = {k: threading.Event() for k in self.scanner.kinds}
        #: kinds (as stored, ``k8s:deployments``) listed and watched since their last failure: objects current
        self._current: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start one watch thread per kind (returns at once; see :meth:`wait_synced`)."""
        if self._threads:
            raise RuntimeError("this watcher is already running; create a new one after stop()")
        self._stop.clear()
        for kind in self.scanner.kinds:
            thread = threading.Thread(target=self._run, args=(kind,), daemon=True,
                                      name=f"watch-{self.source.name}-{kind.label}")
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every watch: close the open connections and join the threads."""
        self._stop.set()
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.close()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def wait_synced(self, timeout: float) -> bool:
        """True once every kind has been listed and its watch opened at least once."""
        return all(event.wait(timeout) for event in self._synced.values())

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # -- the informer loop -----------------------------------------------------------------------
    def _run(self, kind: KindSpec) -> None:
        version = ""
        backoff = 0.5
        # objects listed before their namespace would be labeled without it (unknown) for a moment
        first = next((k for k in self.scanner.kinds if k.resource == "namespaces" and not k.group), kind)
        while kind != first and not self._tried[first].wait(0.2):
            if self._stop.is_set():
                return
        while not self._stop.is_set():
            try:
                if not version:
                    try:
                        version = self._relist(kind)
                    finally:
                        self._tried[kind].set()
                stream = self.scanner.watch(kind, version, self.timeout_seconds)
                with self._lock:
                    self._streams.add(stream)
                try:
                    if self._stop.is_set():  # stop() ran while the watch was opening
                        return
                    with self._lock:  # watched again (after a broken watch, from where it broke): current
                        self._current.add(f"k8s:{kind.resource}")
                    self._synced[kind].set()
                    for event in stream:
                        version = self._apply(kind, event) or version
                        backoff = 0.5
                finally:
                    with self._lock:
                        self._streams.discard(stream)
                    stream.close()
            except ResourceExpired:
                log.info("watch of %s expired (410): listing again", kind.label)
                version = ""
            except KubernetesScanFailure as failure:
                self._failed(kind, failure.error)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception as exc:  # a store or labeling error must not end the watch for good
                self._failed(kind, ScanError(self.scanner.scope, f"applying a {kind.label} event failed: {exc}",
                                             "the watch lists again; check the store"))
                version = ""
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def _relist(self, kind: KindSpec) -> str:
        listed = self.scanner.list_kind(kind)
        resources = listed.resources
        if kind.resource == "namespaces" and not kind.group:  # the cluster record travels with its namespaces
            resources = [cluster_resource(self.source), *resources]
        changes = self._commit(kind, resources, relisted=f"k8s:{kind.resource}", held_kinds=self._held_kinds())
        if listed.related:  # claims whose volume or class this list changed
            changes += self._commit(kind, listed.related, held_kinds=self._held_kinds())
        with self._lock:
            self.stats.label_changes += changes
            self.stats.relists[kind.label] += 1
            self._current.add(f"k8s:{kind.resource}")
        return listed.resource_version

    def _held_kinds(self) -> frozenset[str]:
        """Kinds whose objects are not current (not listed yet, or failing): their labels may only tighten."""
        with self._lock:
            return frozenset(f"k8s:{k.resource}" for k in self.scanner.kinds) - self._current

    def _apply(self, kind: KindSpec, event: WatchEvent) -> str:
        if event.resource is not None:
            held = self._held_kinds()
            if event.type == "DELETED":
                changes = self._commit(kind, event.related, gone=[event.resource.id], held_kinds=held)
            else:
                changes = self._commit(kind, [event.resource, *event.related], held_kinds=held)
            with self._lock:
                self.stats.events[kind.label] += 1
                self.stats.label_changes += changes
        return event.resource_version

    def _commit(self, kind: KindSpec, resources: Sequence[Resource], *, gone: Sequence[str] = (),
                relisted: str | None = None, held_kinds: frozenset[str] = frozenset()) -> int:
        """Commit what a list (of kind ``relisted``) or an event saw. For claims, volumes and classes: one at a
        time, each claim's facts derived from the volume index as it is at commit time, so the last commit
        has the newest policy."""
        if (kind.group, kind.resource) not in VOLUME_KINDS:
            return commit_changes(self.store, self.taxonomy, self.source.name, resources, gone=gone, kind=relisted,
                                  held_kinds=held_kinds)
        with self._volume_lock:
            return commit_changes(self.store, self.taxonomy, self.source.name,
                                  self.scanner.volumes.current(resources), gone=gone, kind=relisted,
                                  held_kinds=held_kinds)

    def _failed(self, kind: KindSpec, error: ScanError) -> None:
        with self._lock:  # until its watch is open again, its objects' own labels are as last seen
            self._current.discard(f"k8s:{kind.resource}")
        if self._stop.is_set():
            return
        log.warning("watch of %s: %s (%s)", kind.label, error.message, error.hint)
        with self._lock:
            self.stats.errors = [*self.stats.errors[-99:], error]
