"""Leader election: every replica serves queries, exactly one scans.

Replicas sharing a PostgreSQL store elect a leader with a Kubernetes ``coordination.k8s.io/v1`` Lease or, with
no cluster at hand, a PostgreSQL session-level advisory lock held on a dedicated connection (the server drops
it the moment the holder's connection closes, so a killed leader frees it at once). Only the leader runs the
scheduled scans, the Kubernetes watches and override expiry.

Leadership alone cannot stop a leader that was paused (GC, a frozen VM, a network partition) and wakes up
mid-commit believing it still leads. So each time a replica becomes the leader it advances every source's
*fencing token* (an epoch in the ``fences`` table), and a scan commits only while its token is still
current (``commit_scan(fence=...)``); a stale leader's late commit is rolled back and logged.

The Lease follows client-go's leaderelection: a follower judges expiry by *its own* clock from the moment it
last saw the lease record change (not by the holder's timestamps, so clock skew does not matter), and a
leader that could not renew for ``renew_deadline`` steps down before anyone may take over
(``renew_deadline < lease_duration``). On a clean shutdown the leader releases the lease so a follower takes
over at its next try instead of after ``lease_duration``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from envlabel.config import Config, KubernetesSource, LeaderElection
from envlabel.discovery.kubernetes_lease import KubernetesLease
from envlabel.errors import ConfigError
from envlabel.store.locks import AdvisoryLock
from envlabel.store.records import Fence
from envlabel.store.sql import Store

log = logging.getLogger("envlabel.leader")

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class Elector(Protocol):
    """One way of holding leadership. ``try_acquire`` takes or renews it: True while held, False while another
    replica holds it; it raises when it cannot tell (the API or the database did not answer)."""

    description: str
    #: True when an error means leadership is certainly gone (a dropped session lost its lock), False when it
    #: may still be held (an API call timed out): the leader then keeps leading until ``renew_deadline``
    lost_on_error: bool

    def try_acquire(self) -> bool: ...
    def release(self) -> None: ...


def replica_identity() -> str:
    """The pod name (HOSTNAME) or host name, and a suffix unique to this process."""
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}-{uuid.uuid4().hex[:6]}"


class Leadership:
    """Runs an :class:`Elector` every ``retry_period`` and hands out fencing tokens while this replica leads.

    ``step()`` is one round (the background thread calls it; tests call it directly with a fake clock).
    ``on_change(leading)`` is called from the election thread when leadership is gained or lost.
    """

    def __init__(self, elector: Elector, store: Store, sources: Sequence[str], *, identity: str,
                 retry_period_s: float, renew_deadline_s: float, clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.elector = elector
        self.store = store
        self.sources = list(sources)
        self.identity = identity
        self.retry_period_s = retry_period_s
        self.renew_deadline_s = renew_deadline_s
        self.on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, Fence] = {}
        self._renewed_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        with self._lock:
            return self._renewed_at is not None

    def token(self, source: str) -> Fence | None:
        """The fencing token to commit ``source``'s scan with; None when this replica does not lead."""
        with self._lock:
            return self._tokens.get(source) if self._renewed_at is not None else None

    def step(self) -> bool:
        """One round of the election; returns whether this replica leads afterwards."""
        try:
            held = self.elector.try_acquire()
        except Exception as exc:
            with self._lock:
                renewed = self._renewed_at
            if renewed is not None and not self.elector.lost_on_error and \
                    self._clock() - renewed < self.renew_deadline_s:
                log.warning("could not renew %s (%s); still the leader for at most %.0fs more",
                            self.elector.description, exc, self.renew_deadline_s - (self._clock() - renewed))
                return True
            if renewed is not None:
                self._lose(f"could not renew {self.elector.description} ({exc})")
            else:
                log.warning("leader election through %s failed: %s; trying again in %.0fs",
                            self.elector.description, exc, self.retry_period_s)
            return False
        if not held:
            if self.is_leader:
                self._lose(f"another replica holds {self.elector.description}")
            return False
        if not self.is_leader:
            return self._gain()
        with self._lock:
            self._renewed_at = self._clock()
        return True

    def _gain(self) -> bool:
        try:
            now = datetime.now(UTC)
            with self.store.transaction() as tx:
                tokens = {s: tx.advance_fence(s, self.identity, now) for s in self.sources}
        except Exception as exc:  # leading without tokens would scan for nothing; let another replica try
            log.warning("took %s but could not advance the fencing tokens (%s); letting go",
                        self.elector.description, exc)
            self.elector.release()
            return False
        with self._lock:
            self._tokens = tokens
            self._renewed_at = self._clock()
        log.info("%s is now the leader through %s (fencing epochs: %s)", self.identity, self.elector.description,
                 ", ".join(f"{s}@{f.epoch}" for s, f in sorted(tokens.items())) or "no sources")
        if self.on_change:
            self.on_change(True)
        return True

    def _lose(self, why: str) -> None:
        with self._lock:
            self._tokens = {}
            self._renewed_at = None
        log.warning("%s is no longer the leader: %s; it stops scanning", self.identity, why)
        if self.on_change:
            self.on_change(False)

    # -- the election thread ---------------------------------------------------------------------
    def start(self) -> Leadership:
        self._thread = threading.Thread(target=self._run, name="envlabel-leader", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a bug here must not end the election for the life of the process
                log.exception("leader election round failed")
            self._stop.wait(self.retry_period_s)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop electing; a leader lets go (a follower takes over at its next try)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.is_leader:
            with self._lock:
                self._tokens = {}
                self._renewed_at = None
            log.info("%s lets go of %s", self.identity, self.elector.description)
        self.elector.release()


def election_kind(config: Config) -> str:
    """``lease``, ``advisory_lock`` or ``none`` for this configuration (see :class:`LeaderElection`)."""
    kind = config.leader_election.kind
    if kind != "auto":
        return kind
    if not config.store.startswith(("postgresql://", "postgres://")):
        return "none"  # an embedded store has one replica
    if any(isinstance(s, KubernetesSource) for s in config.sources):
        return "lease"
    return "advisory_lock"


def lease_namespace(settings: LeaderElection) -> str:
    if settings.namespace:
        return settings.namespace
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def lease_api_client(config: Config) -> Any:
    """The API client the Lease is written with: leader_election's own connection settings, else the first
    kubernetes source's, else in-cluster when running in a pod, else the default kubeconfig."""
    from envlabel.discovery.kubernetes import build_api_client

    settings = config.leader_election
    first = next((s for s in config.sources if isinstance(s, KubernetesSource)), None)
    if settings.kubeconfig or settings.context or settings.in_cluster is not None or first is None:
        in_cluster = settings.in_cluster if settings.in_cluster is not None else (
            not settings.kubeconfig and bool(os.environ.get("KUBERNETES_SERVICE_HOST")))
        first = KubernetesSource(name="leader-election", type="kubernetes", kubeconfig=settings.kubeconfig,
                                 context=settings.context, in_cluster=in_cluster)
    return build_api_client(first)


def leadership_for(config: Config, store: Store, *, identity: str | None = None,
                   on_change: Callable[[bool], None] | None = None) -> Leadership | None:
    """The leader election ``config`` asks for, or None (a single replica scans by itself)."""
    kind = election_kind(config)
    if kind == "none":
        return None
    settings = config.leader_election
    identity = identity or replica_identity()
    elector: Elector
    if kind == "advisory_lock":
        if store.dialect.name != "postgresql":
            raise ConfigError([("leader_election.kind", "advisory_lock needs a postgresql:// store; use lease, "
                                "or none for a single replica")])
        elector = AdvisoryLock(store.dialect.connect)
    else:
        try:
            api_client = lease_api_client(config)
        except Exception as exc:
            raise ConfigError([("leader_election", f"cannot reach the Kubernetes API for the Lease: {exc}; set "
                                "leader_election.kubeconfig/context/in_cluster, or kind: advisory_lock")]) from exc
        elector = KubernetesLease(api_client, lease_namespace(settings), settings.lease_name, identity,
                                  settings.lease_duration.total_seconds())
    return Leadership(elector, store, [s.name for s in config.sources], identity=identity,
                      retry_period_s=settings.retry_period.total_seconds(),
                      renew_deadline_s=settings.renew_deadline.total_seconds(), on_change=on_change)
