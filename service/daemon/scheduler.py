"""The daemon behind ``envlabel serve``: scheduled scans, Kubernetes watches, webhooks and a clean exit.

Threads, and why each exists:

- uvicorn serves the API (and MCP) from its own thread, so ``/healthz`` answers while the first scans run;
  ``/readyz`` turns ready once a scan has completed or the store already holds labels.
- APScheduler (3.x ``BackgroundScheduler``) fires one job per source: at start, then every ``interval``
  (the source's, else ``schedule.interval``) plus up to ``jitter`` (capped at half the interval), so many
  daemons do not hit one cloud API in step. ``max_instances=1`` and a per-source lock mean one source never
  scans twice at once; ``coalesce`` turns a backlog of missed runs (a laptop asleep, a long scan) into one.
- Each scan runs in a daemon thread that the job waits for. The scan commits in one transaction at the end,
  so a scan that is still running when the shutdown deadline passes is *abandoned*: it is told not to commit,
  and the process exits without it. Nothing partial is ever written.
- A tick job (every ``tick``) persists labels whose override expired
  (``envlabel.service.core.overrides.relabel_lapsed``), restarts a Kubernetes watch whose threads died, and
  reports label changes made between scans (watches, overrides) to the metrics and webhooks. On a replica that
  does not lead it refreshes the resource and finding gauges instead, whenever the store changed (the leader's
  scans), so every replica's ``/metrics`` tells the same story; it announces nothing.
- The webhook sender (service.daemon.webhooks) sends the store's outbox while this replica leads. Label changes
  are announced from the history mark kept in the store (``meta``, ``webhooks.history_mark``), so changes made
  while the daemon was down (an override set with the CLI, another replica's last scan) are announced after it
  starts, once.
- A purge job (at start, then hourly; the leader only) deletes decisions older than ``decisions.retention``.
- One ``KubernetesWatcher`` per Kubernetes source with ``watch: true`` keeps labels current between scans.

Shutdown (SIGTERM or SIGINT): stop scheduling, stop the watches, wait for running scans until the deadline
(``--shutdown-timeout``; keep it below the pod's ``terminationGracePeriodSeconds``), abandon the rest, flush
webhooks with what time is left, stop the API, exit 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from envlabel.config import Config, KubernetesSource, Source
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import ScanResult
from envlabel.service.core.clock import utcnow
from envlabel.service.core.export import export_configured
from envlabel.service.core.listing import change_mark
from envlabel.service.core.pipeline import ScanSummary, commit_scan, scan_source
from envlabel.service.core.query import Query
from envlabel.service.daemon.leader import Leadership, leadership_for
from envlabel.service.daemon.metrics import Metrics, ScanMetrics
from envlabel.service.daemon.webhooks import (
    ENVIRONMENT_CHANGED,
    FINDING,
    Event,
    WebhookDispatcher,
    endpoints_from_config,
)
from envlabel.store.codec import ts
from envlabel.store.outbox import HISTORY_MARK_KEY, MarkMove, MarkMoved
from envlabel.store.records import FencedOut, HistoryEntry
from envlabel.store.sql import Store

if TYPE_CHECKING:
    from envlabel.service.daemon.server import Tls
    from envlabel.service.daemon.watch import KubernetesWatcher

log = logging.getLogger("envlabel.daemon")

DEFAULT_SHUTDOWN_TIMEOUT = 25.0  # seconds; under Kubernetes' default 30s grace period
DEFAULT_TICK = timedelta(seconds=15)
#: how often the decision log's retention is applied (and once at start)
PURGE_INTERVAL = timedelta(hours=1)
#: at most this many environment_changed webhooks per report; a taxonomy change that flips a whole estate
#: is one decision, not a million messages (the rest are counted and logged)
MAX_CHANGE_EVENTS = 1000


@dataclass(frozen=True, slots=True)
class JobPlan:
    """When one source is scanned."""

    source: str
    interval: timedelta
    jitter: timedelta

    def trigger(self) -> IntervalTrigger:
        return IntervalTrigger(seconds=self.interval.total_seconds(),
                               jitter=int(self.jitter.total_seconds()) or None, timezone="UTC")


def plan_jobs(config: Config) -> list[JobPlan]:
    """One plan per source: its own interval or the schedule's, jitter capped at half the interval."""
    plans = []
    for source in config.sources:
        interval = source.interval or config.schedule.interval
        plans.append(JobPlan(source.name, interval, min(config.schedule.jitter, interval / 2)))
    return plans


def scan_outcome(result: ScanResult) -> str:
    if result.complete:
        return "complete"
    return "partial" if result.resources else "failed"


class Reporter:
    """After each scan and tick: what changed in the store, for the metrics and the webhooks.

    Label changes are read back from ``label_history`` (every writer records there: scans, watches,
    overrides, expiry). With webhooks kept in the store's outbox they start from the history mark stored beside
    them (:data:`~envlabel.store.outbox.HISTORY_MARK_KEY`), which moves in the transaction that writes their
    deliveries: a change made while the daemon was down is announced after it starts, and never twice. Otherwise
    they start from where the store stood when the daemon started. High-severity findings are compared with those
    already present; only new ones are announced.
    """

    def __init__(self, query: Query, metrics: ScanMetrics, webhooks: WebhookDispatcher | None) -> None:
        self.query = query
        self.metrics = metrics
        self.webhooks = webhooks
        #: the history mark lives in the store (beside the outbox) rather than in this process
        self.durable = webhooks is not None and webhooks.store is not None
        self._lock = threading.Lock()
        self._mark = 0
        self._high: set[tuple[str, str]] = set()
        #: the store's change mark when the gauges were last set (a follower refreshes them when it moves)
        self._gauges_at: tuple[object, ...] | None = None

    def prime(self) -> None:
        """Start from the store as it is: earlier findings are not announced again, nor earlier changes (but
        with a stored mark, the changes after it are: they were made while no daemon announced them)."""
        store = self.query.store
        with self._lock:
            newest = store.history_mark()
            self._mark = store.init_mark(HISTORY_MARK_KEY, newest) if self.durable else newest
            self._refresh_gauges()

    def catch_up(self) -> None:
        """Follow the announcing without announcing: a replica that does not lead leaves it to the leader, and
        does not repeat it if it takes over later (it starts from the stored mark: where the leader stopped)."""
        store = self.query.store
        with self._lock:
            stored = store.meta_value(HISTORY_MARK_KEY) if self.durable else None
            self._mark = int(stored) if stored is not None else store.history_mark()

    def refresh_gauges(self) -> bool:
        """Set the resource and finding gauges again if the store changed since they were set (a follower's tick:
        the leader's scans land in the store it reads); announces nothing. True if it read the estate."""
        mark = change_mark(self.query)
        if mark == self._gauges_at:
            return False
        with self._lock:
            self._refresh_gauges(mark)
        return True

    def _refresh_gauges(self, mark: tuple[object, ...] | None = None) -> None:
        """The gauges, and the high findings a later :meth:`report_estate` compares with (under ``_lock``)."""
        self._gauges_at = mark if mark is not None else change_mark(self.query)
        self.metrics.set_resources(self.query.store.counts())
        self._high = {(f["target"], f["kind"]) for f in self._audit(publish=False)}

    def report_changes(self) -> None:
        """Count label changes since the last report; announce environment changes."""
        with self._lock:  # held while publishing: the stored mark moves from the value this report read
            store = self.query.store
            upto = store.history_mark()
            if upto <= self._mark:
                return
            written, changed = store.history_since(self._mark, upto, MAX_CHANGE_EVENTS)
            events = self._change_events(changed) if self.webhooks is not None else []
            if not self._announce(events, upto):
                return
        self.metrics.label_changes.inc(written)
        self.metrics.environment_changes.inc(len(changed))
        if len(changed) == MAX_CHANGE_EVENTS:
            log.warning("more than %d environments changed at once; webhooks announce the first %d (see "
                        "`envlabel history` for the rest)", MAX_CHANGE_EVENTS, MAX_CHANGE_EVENTS)

    def _announce(self, events: list[Event], upto: int) -> bool:
        """Publish ``events`` and move the mark to ``upto`` (with a stored mark: in one transaction, from the value
        this report started at); False when another replica had announced them already."""
        if self.durable:
            assert self.webhooks is not None
            try:
                self.webhooks.publish(events, mark=MarkMove(HISTORY_MARK_KEY, self._mark, upto))
            except MarkMoved as exc:
                log.info("label changes up to %d were announced by another replica; following on from there",
                         exc.current)
                self._mark = exc.current
                return False
        elif self.webhooks is not None and events:
            self.webhooks.publish(events)
        self._mark = upto
        return True

    def _change_events(self, changed: Sequence[HistoryEntry]) -> list[Event]:
        events = []
        for entry in changed:
            data: dict[str, Any] = {"target": entry.target, "before": entry.before,
                                    "environment": entry.resolution.environment, "at": ts(entry.at),
                                    "scan_id": entry.scan_id}
            try:
                data["label"] = self.query.label(entry.target)
            except Exception:  # the change is the news; the current label is a courtesy
                log.exception("could not read the label of %s for its webhook", entry.target)
            events.append(Event(ENVIRONMENT_CHANGED, data))
        return events

    def report_estate(self) -> None:
        """Refresh the resource and finding gauges and announce new high-severity findings (after a scan)."""
        self.metrics.set_resources(self.query.store.counts())
        with self._lock:
            self._audit(publish=True)

    def _audit(self, *, publish: bool) -> list[dict[str, Any]]:
        from envlabel.service.core.audit import finding_json, run_audit

        found = run_audit(self.query)
        self.metrics.set_findings(Counter((f.kind, f.severity) for f in found))
        high = [finding_json(f) for f in found if f.severity == "high"]
        if publish:
            new = [f for f in high if (f["target"], f["kind"]) not in self._high]
            self._high = {(f["target"], f["kind"]) for f in high}
            if self.webhooks is not None and new:
                self.webhooks.publish([Event(FINDING, f) for f in new])
        return high


class Daemon:
    """Schedules every source, runs the watches, reports; ``start()`` returns at once, ``stop()`` drains."""

    def __init__(self, config: Config, store: Store, metrics: ScanMetrics, *,
                 webhooks: WebhookDispatcher | None = None, scan: Callable[[Source], ScanResult] | None = None,
                 tick: timedelta = DEFAULT_TICK, watch: bool = True, leadership: Leadership | None = None) -> None:
        self.config = config
        #: with several replicas, only the leader scans, watches and expires overrides (service.leader)
        self.leadership = leadership
        self.store = store
        self.taxonomy = Taxonomy.from_config(config)
        self.metrics = metrics
        self.webhooks = webhooks
        self.reporter = Reporter(Query(config, store), self.metrics, webhooks)
        # a worker per source (and the tick), so a long scan of one never delays another's
        self.scheduler = BackgroundScheduler(timezone="UTC",
                                             executors={"default": ThreadPoolExecutor(len(config.sources) + 2)})
        self.tick_interval = tick
        self._scan = scan
        self._watch = watch
        self._watchers: dict[str, KubernetesWatcher] = {}
        self._source_locks = {s.name: threading.Lock() for s in config.sources}
        self._running: set[str] = set()
        self._state = threading.Condition()
        self._stopping = threading.Event()
        self._abandon = threading.Event()
        self._commit = threading.Lock()  # held from "not abandoned?" to the end of a commit

    # -- lifecycle -------------------------------------------------------------------------------
    def schedule(self) -> None:
        """Add the jobs: every source at once and then on its interval; the tick."""
        now = utcnow()
        for plan in plan_jobs(self.config):
            self.scheduler.add_job(
                self.run_scan, plan.trigger(), args=(plan.source,), id=f"scan:{plan.source}",
                name=f"scan {plan.source}", next_run_time=now, max_instances=1, coalesce=True,
                # a run late by up to one interval still runs (once, coalesced); later than that, wait for the next
                misfire_grace_time=max(1, int(plan.interval.total_seconds())))
        self.scheduler.add_job(self.tick, IntervalTrigger(seconds=self.tick_interval.total_seconds(), timezone="UTC"),
                               id="tick", name="tick", max_instances=1, coalesce=True,
                               misfire_grace_time=max(1, int(self.tick_interval.total_seconds())))
        if self.config.decisions.enabled:
            self.scheduler.add_job(self.purge_decisions, IntervalTrigger(seconds=PURGE_INTERVAL.total_seconds(),
                                                                         timezone="UTC"),
                                   id="purge-decisions", name="purge decisions", next_run_time=now, max_instances=1,
                                   coalesce=True, misfire_grace_time=int(PURGE_INTERVAL.total_seconds()))

    def start(self) -> Daemon:
        self.reporter.prime()
        if self.webhooks is not None:  # every replica records what it publishes; the leader sends the outbox
            self.webhooks.start(sends=lambda: self.leads)
        self.schedule()
        self.start_watches()
        self.scheduler.start()
        return self

    @property
    def leads(self) -> bool:
        """Whether this replica does the writing: the only one, or the elected leader."""
        return self.leadership is None or self.leadership.is_leader

    def on_leadership(self, leading: bool) -> None:
        """Leadership changed (called from the election thread): a new leader scans at once; a former one
        stops its watches (its running scan may finish, but its fencing token no longer commits)."""
        if leading:
            if self.scheduler.running and not self._stopping.is_set():
                for plan in plan_jobs(self.config):
                    self.scheduler.modify_job(f"scan:{plan.source}", next_run_time=utcnow())
            self.start_watches()
        else:
            self.supervise_watches()

    @property
    def abandoned(self) -> bool:
        """True once :meth:`stop` gave up waiting for a scan."""
        return self._abandon.is_set()

    def stop(self, timeout: float) -> bool:
        """Stop scheduling and watching, wait up to ``timeout`` for running scans, abandon the rest.

        Returns True when nothing was abandoned and every webhook was delivered."""
        deadline = time.monotonic() + timeout
        with self._state:
            self._stopping.set()
            self._state.notify_all()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for watcher in self._watchers.values():
            watcher.stop(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
        with self._state:
            finished = self._state.wait_for(lambda: not self._running, max(0.0, deadline - time.monotonic()))
            if not finished:
                log.warning("abandoning the scan of %s at shutdown: nothing of it is committed; the next "
                            "start scans again", ", ".join(sorted(self._running)))
                self._abandon.set()
        # a commit already under way finishes (SQLite's journal would undo a half-written one anyway)
        if self._commit.acquire(timeout=max(0.1, deadline - time.monotonic())):
            self._commit.release()
        delivered = True
        if self.webhooks is not None:
            delivered = self.webhooks.stop(max(0.1, deadline - time.monotonic()))
        return finished and delivered

    # -- the jobs --------------------------------------------------------------------------------
    def run_scan(self, name: str) -> ScanSummary | None:
        """Scan ``name`` and commit; None if it is already being scanned or the daemon abandoned it."""
        lock = self._source_locks[name]
        if not lock.acquire(blocking=False):
            log.info("scan of %s skipped: the previous one is still running", name)
            return None
        outcome: list[ScanSummary | None] = []
        with self._state:
            self._running.add(name)
        # the scan runs in a daemon thread so an abandoned scan cannot hold the process open at exit
        thread = threading.Thread(target=self._scan_and_commit, args=(self.config.source(name), outcome),
                                  name=f"scan-{name}", daemon=True)
        thread.start()
        with self._state:
            # at shutdown the job lets go at once (stop() does the waiting), so the scheduler's workers end
            self._state.wait_for(lambda: bool(outcome) or self._stopping.is_set())
            if outcome:
                lock.release()
            return outcome[0] if outcome else None

    def _scan_and_commit(self, source: Source, outcome: list[ScanSummary | None]) -> None:
        summary: ScanSummary | None = None
        try:
            summary = self._commit_unless_abandoned(source)
        finally:
            with self._state:  # committed or not: shutdown waits no longer for this scan
                self._running.discard(source.name)
                self._state.notify_all()
        try:
            if summary is not None:
                self.reporter.report_changes()
                self.reporter.report_estate()
                if summary.label_changes or summary.removed:  # opt-in (config export.directory)
                    export_configured(self.reporter.query)
        except Exception:
            log.exception("reporting the scan of %s failed; its labels are committed", source.name)
        finally:
            with self._state:
                outcome.append(summary)
                self._state.notify_all()

    def _commit_unless_abandoned(self, source: Source) -> ScanSummary | None:
        clock = time.perf_counter()
        fence = self.leadership.token(source.name) if self.leadership is not None else None
        if self.leadership is not None and fence is None:
            log.debug("scan of %s skipped: another replica leads", source.name)
            return None
        try:
            started = utcnow()
            result = scan_source(source, self._scan)
            with self._commit:
                if self._abandon.is_set():
                    self.metrics.observe_scan(source.name, "abandoned", time.perf_counter() - clock)
                    return None
                summary = commit_scan(self.store, self.taxonomy, result, started, fence=fence)
        except FencedOut as exc:  # leadership moved on while this scan ran: the new leader's scans count
            self.metrics.observe_scan(source.name, "fenced", time.perf_counter() - clock)
            log.warning("scan of %s not committed: %s", source.name, exc)
            return None
        except Exception:  # a store failure: counted and logged; the next run tries again
            self.metrics.observe_scan(source.name, "error", time.perf_counter() - clock)
            log.exception("scan of %s could not be committed; the previous labels stand", source.name)
            return None
        outcome = scan_outcome(result)
        self.metrics.observe_scan(source.name, outcome, time.perf_counter() - clock)
        log.info("scan of %s: %s, %d resources, %d label change(s), %d removed, %d error(s) in %.1fs", source.name,
                 outcome, summary.resources, summary.label_changes, summary.removed, len(summary.errors),
                 time.perf_counter() - clock)
        for error in summary.errors:
            log.warning("scan of %s: %s: %s (%s)", source.name, error.scope, error.message, error.hint)
        return summary

    def tick(self) -> None:
        """Between scans: expire overrides (with history), keep the watches alive, report their changes."""
        from envlabel.service.core.overrides import relabel_lapsed

        try:
            if self.leads:
                relabel_lapsed(self.store, self.taxonomy)
            self.supervise_watches()
            if self.leads:  # every replica reads the same history: one announces it
                self.reporter.report_changes()
            else:
                self.reporter.catch_up()
                self.reporter.refresh_gauges()
        except Exception:
            log.exception("the daemon's tick failed; it runs again in %s", self.tick_interval)

    def purge_decisions(self) -> int:
        """Delete decisions older than ``decisions.retention`` (the leader only: one replica deletes); how many."""
        if not self.leads:
            return 0
        retention = self.config.decisions.retention
        try:
            deleted = self.store.purge_decisions(utcnow() - retention)
        except Exception:
            log.exception("purging the decision log failed; it runs again in %s", PURGE_INTERVAL)
            return 0
        if deleted:
            log.info("decision log: %d decisions older than %s deleted (decisions.retention)", deleted, retention)
        return deleted

    # -- Kubernetes watches -----------------------------------------------------------------------
    def watched_sources(self) -> list[KubernetesSource]:
        if not self._watch:
            return []
        return [s for s in self.config.sources if isinstance(s, KubernetesSource) and s.watch]

    def start_watches(self) -> None:
        if not self.leads:
            return
        for source in self.watched_sources():
            self._start_watch(source)

    def supervise_watches(self) -> None:
        """Restart a watch whose threads have all ended (each thread retries on its own; this is the backstop).
        A replica that does not lead runs none."""
        if not self.leads:
            for name in list(self._watchers):
                self._watchers.pop(name).stop(timeout=1.0)
            return
        for source in self.watched_sources():
            watcher = self._watchers.get(source.name)
            if watcher is None or not watcher.running:
                log.warning("the watch of %s is not running; starting it again", source.name)
                if watcher is not None:
                    watcher.stop(timeout=1.0)
                self._start_watch(source)

    def _start_watch(self, source: KubernetesSource) -> None:
        from envlabel.service.daemon.watch import KubernetesWatcher

        try:
            watcher = KubernetesWatcher(self.config, self.store, source)
            watcher.start()
        except Exception as exc:  # an unreadable kubeconfig: the scheduled scan reports it; the tick retries
            log.warning("could not start the watch of %s: %s: %s; retrying at the next tick", source.name,
                        type(exc).__name__, exc)
            return
        self._watchers[source.name] = watcher


def run_daemon(config: Config, store: Store, host: str, port: int,
               shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT, *, listener: socket.socket | None = None,
               tls: Tls | None = None) -> None:
    """``envlabel serve``: the API plus the daemon, until SIGTERM or SIGINT; then a bounded, clean exit.
    ``listener``: the socket bound to (host, port) beforehand (service.daemon.ports), served as it is;
    ``tls``: serve HTTPS with that certificate and key."""
    from envlabel.service.daemon.server import BackgroundServer

    configure_logging()
    endpoints = endpoints_from_config(config.webhooks)  # a missing secret fails now, not at the first delivery
    metrics = Metrics()
    scan_metrics = ScanMetrics(metrics.registry)
    # the deliveries wait in the store's outbox, so a restart (or a new leader) sends what is left
    webhooks = WebhookDispatcher(endpoints, scan_metrics, store=store) if endpoints else None
    daemon = Daemon(config, store, scan_metrics, webhooks=webhooks)
    daemon.leadership = leadership_for(config, store, on_change=daemon.on_leadership)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: shutting down within %ss", signal.Signals(signum).name, shutdown_timeout)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    # approval events (approval_requested / approval_decided) go out through the daemon's webhooks
    notify = daemon.webhooks.notifier() if daemon.webhooks is not None else None
    server = BackgroundServer(config, store, host, port, metrics, listener=listener, tls=tls, notify=notify).start()
    try:
        log.info("envlabel serving on %s; scans: %s; %d watched", server.url,
                 scan_plans_text(plan_jobs(config)) or "none configured", len(daemon.watched_sources()))
        daemon.start()
        if daemon.leadership is not None:
            log.info("leader election through %s as %s: only the leader scans", daemon.leadership.elector.description,
                     daemon.leadership.identity)
            daemon.leadership.start()
        stop.wait()
        deadline = time.monotonic() + shutdown_timeout
        # keep answering agents while scans finish; leave the API a slice of the time to close
        clean = daemon.stop(max(0.0, shutdown_timeout - min(2.0, shutdown_timeout / 4)))
        if daemon.leadership is not None:  # let go, so another replica takes over at its next try
            daemon.leadership.stop(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
        server.stop(max(0.1, deadline - time.monotonic()))
        log.info("envlabel stopped%s", "" if clean else " (abandoned work is listed above)")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if daemon.abandoned:
        # An abandoned scan may sit in a scanner's worker threads (non-daemon, joined at interpreter exit)
        # waiting on a cloud API; leave now. Every commit has finished or never started, so the store is whole.
        logging.shutdown()
        os._exit(0)


def configure_logging() -> None:
    """INFO lines on stderr unless the embedding program configured logging already."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # every job start and finish at INFO drowns the scan lines this module writes; skipped runs still warn
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("botocore.credentials").setLevel(logging.WARNING)


def scan_plans_text(plans: Sequence[JobPlan]) -> str:
    return ", ".join(f"{p.source} every {p.interval} (+{p.jitter} jitter)" for p in plans)
