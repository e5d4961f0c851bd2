"""Webhooks: signed JSON POSTs when an environment changes, a new high-severity finding appears, or an approval
request is made or decided.

``environment_changed`` and ``finding`` bodies are an envelope ``{"id", "event", "data"}``. The approval events
(``approval_requested``, ``approval_decided``) are sent as :func:`envlabel.service.core.approvals.approval_message`
builds them, with no envelope, so a Slack or Teams incoming webhook renders them as is (``text``, Slack ``blocks``;
the request itself under ``envlabel``); a webhook with ``environments`` gets them only for requests in those
environments (each environment's approvers have a channel of their own). :meth:`WebhookDispatcher.notifier` is the
``notify`` callable an :class:`~envlabel.service.core.authority.Authority` announces them through.

Delivery runs on one background thread, so a slow or dead receiver never holds up a scan. A delivery that fails
(connection error, timeout, any status outside 2xx) is retried with exponential backoff (``backoff``, doubling,
capped at ``max_backoff``) up to ``max_attempts`` times, then given up on and counted as ``failed``.

The daemon's dispatcher keeps its deliveries in the store's outbox (``store=``; envlabel.store.outbox): publishing
writes one row per receiver, the sender thread claims due rows, POSTs and marks them, so a delivery still retrying
when the daemon stops, or one it published just before, is sent after the next start. With several replicas every
replica writes the rows of what it publishes (an approval request made on a follower) and only the leader sends
(``start(sends=...)``); the row claim keeps two replicas from sending one row at once. Without a store (tests,
embedding) the deliveries wait in a bounded in-memory queue and are lost at exit.

Idempotency: each event has one id, sent as ``X-Envlabel-Delivery`` and in the body as ``idempotency_key``, the same
on every attempt, to every receiver, before and after a restart. A sender that died after the receiver took a
delivery but before it was marked delivered sends it again with that id, so delivery is at least once on the wire
and exactly once per receiver that dedupes by ``idempotency_key`` (keep the ids of the last few days): one event
never goes to one receiver under two different ids.

Signature (when the webhook names ``secret_env``)::

    X-Envlabel-Timestamp: <unix seconds of this attempt>
    X-Envlabel-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

The receiver recomputes the HMAC over the timestamp, a dot and the raw body bytes, compares in constant
time, and rejects timestamps older than a few minutes (a replayed request keeps its old timestamp).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from envlabel.config import Webhook
from envlabel.errors import ConfigError
from envlabel.service.core.approvals import APPROVAL_DECIDED, APPROVAL_REQUESTED
from envlabel.service.core.authority import Notify
from envlabel.service.core.clock import utcnow
from envlabel.service.daemon.metrics import ScanMetrics
from envlabel.store.outbox import MarkMove, NewDelivery, OutboxRow
from envlabel.store.sql import Store

log = logging.getLogger("envlabel.webhooks")

ENVIRONMENT_CHANGED = "environment_changed"
FINDING = "finding"
#: the events whose body is the approval message itself, filtered by the webhook's ``environments``
APPROVAL_EVENTS = frozenset({APPROVAL_REQUESTED, APPROVAL_DECIDED})
SIGNATURE_HEADER = "X-Envlabel-Signature"
TIMESTAMP_HEADER = "X-Envlabel-Timestamp"
#: the body's copy of ``X-Envlabel-Delivery``: what a receiver dedupes by
IDEMPOTENCY_KEY = "idempotency_key"
#: how long the outbox keeps delivered and given-up rows (their outcome, not their body) for an operator to read
OUTBOX_RETENTION = timedelta(days=7)
#: seconds between the sender's deletions of rows older than OUTBOX_RETENTION
OUTBOX_PURGE_INTERVAL = 3600.0


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Envlabel-Signature`` value for ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (constant-time compare); the tests use it too."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # ENVIRONMENT_CHANGED | FINDING (approval events go through publish_approval)
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Endpoint:
    url: str
    secret: bytes | None
    events: frozenset[str]
    #: approval events only for requests in these environments (None: every one)
    environments: frozenset[str] | None = None

    def wants(self, event: str, environment: str | None = None) -> bool:
        """Subscribed to ``event`` (an approval event: for a request in ``environment``)."""
        if event not in self.events:
            return False
        return event not in APPROVAL_EVENTS or self.environments is None or environment in self.environments


@dataclass(frozen=True, slots=True)
class Delivery:
    endpoint: Endpoint
    id: str
    event: str
    body: bytes


def endpoints_from_config(webhooks: Sequence[Webhook], environ: Mapping[str, str] | None = None) -> list[Endpoint]:
    """Resolve each webhook's secret now, so a missing variable fails the start, not the first delivery."""
    environ = os.environ if environ is None else environ
    problems: list[tuple[str, str]] = []
    endpoints: list[Endpoint] = []
    for i, hook in enumerate(webhooks):
        secret: bytes | None = None
        if hook.secret_env:
            value = environ.get(hook.secret_env)
            if not value:
                problems.append((f"webhooks.{i}.secret_env", f"the environment variable {hook.secret_env} is not "
                                 "set; set it to the shared secret, or remove secret_env to send unsigned"))
                continue
            secret = value.encode()
        environments = frozenset(hook.environments) if hook.environments is not None else None
        endpoints.append(Endpoint(hook.url, secret, frozenset(hook.events), environments))
    if problems:
        raise ConfigError(problems)
    return endpoints


class WebhookDispatcher:
    """``publish(events)`` records the deliveries and returns at once; a background thread POSTs, retrying with
    backoff. ``store``: in the store's outbox (they survive a restart), else in a bounded in-memory queue."""

    def __init__(self, endpoints: Sequence[Endpoint], metrics: ScanMetrics | None = None, *,
                 store: Store | None = None, identity: str | None = None, max_attempts: int = 6,
                 backoff: float = 1.0, max_backoff: float = 60.0, timeout: float = 10.0, max_queue: int = 10000,
                 claim_seconds: float | None = None, poll: float = 1.0, client: httpx.Client | None = None) -> None:
        self.endpoints = list(endpoints)
        self.metrics = metrics
        #: where deliveries wait (None: in memory)
        self.store = store
        #: who claims outbox rows: unique to this process
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        #: an outbox row is claimed for longer than a POST can take, so a live sender never loses its claim
        #: mid-delivery; a dead one's claim lapses after this and the row is sent again (same id)
        self.claim_seconds = claim_seconds if claim_seconds is not None else timeout + 30.0
        if self.claim_seconds <= timeout:
            raise ValueError(f"claim_seconds ({self.claim_seconds}) must be longer than the timeout ({timeout}): a "
                             "claim that lapses mid-delivery lets another replica send the same row at once")
        self.poll = poll
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._queue: queue.Queue[Delivery] = queue.Queue(max_queue)
        self._sends: Callable[[], bool] = lambda: True
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._round = threading.Condition()  # notified after each round of the outbox sender
        self._purged_at = -OUTBOX_PURGE_INTERVAL
        run = self._run if store is None else self._run_outbox
        self._thread = threading.Thread(target=run, name="envlabel-webhooks", daemon=True)

    def start(self, sends: Callable[[], bool] | None = None) -> WebhookDispatcher:
        """Start sending. ``sends``: whether this replica sends now (the daemon passes "am I the leader"); a
        replica that does not still writes what it publishes to the outbox, for the leader to send."""
        if sends is not None:
            self._sends = sends
        self._thread.start()
        return self

    def publish(self, events: Sequence[Event], mark: MarkMove | None = None) -> int:
        """Record ``events`` for every endpoint subscribed to them; returns how many deliveries were recorded.
        ``mark``: move the webhooks' history mark in the same transaction (outbox only; raises
        :class:`~envlabel.store.outbox.MarkMoved`, recording nothing, when another replica moved it first)."""
        deliveries = []
        for event in events:
            event_id = str(uuid.uuid4())
            body = json.dumps({"id": event_id, IDEMPOTENCY_KEY: event_id, "event": event.kind, "data": event.data},
                              sort_keys=True, default=str).encode()
            deliveries += [Delivery(endpoint, event_id, event.kind, body)
                           for endpoint in self.endpoints if endpoint.wants(event.kind)]
        return self._record(deliveries, mark)

    def publish_approval(self, kind: str, message: Mapping[str, Any]) -> int:
        """Record an approval event whose body is ``message`` (approval_message) for the endpoints subscribed to it
        and to its environment; returns how many deliveries were recorded. Never waits for a receiver: a check
        calls it (with a store: one small write transaction)."""
        if kind not in APPROVAL_EVENTS:
            raise ValueError(f"{kind!r} is not an approval event ({', '.join(sorted(APPROVAL_EVENTS))})")
        machine = message.get("envlabel")
        environment = machine.get("environment") if isinstance(machine, Mapping) else None
        delivery_id = str(uuid.uuid4())
        body = json.dumps({**message, IDEMPOTENCY_KEY: delivery_id}, sort_keys=True, default=str).encode()
        return self._record([Delivery(endpoint, delivery_id, kind, body)
                             for endpoint in self.endpoints if endpoint.wants(kind, environment)], None)

    def notifier(self) -> Notify:
        """The ``notify`` of an Authority: ``Authority(query, notify=dispatcher.notifier())``."""
        def notify(kind: str, message: Mapping[str, Any]) -> None:
            self.publish_approval(kind, message)
        return notify

    def _record(self, deliveries: Sequence[Delivery], mark: MarkMove | None) -> int:
        if self.store is None:
            return sum(self._enqueue(delivery) for delivery in deliveries)
        if not deliveries and mark is None:
            return 0
        rows = [NewDelivery(d.id, d.endpoint.url, d.event, d.body.decode()) for d in deliveries]
        added = self.store.add_to_outbox(rows, utcnow(), mark)
        if added:
            self._wake.set()
        return added

    def _enqueue(self, delivery: Delivery) -> int:
        try:
            self._queue.put_nowait(delivery)
        except queue.Full:  # a receiver down for long: drop rather than grow without bound
            self._count(delivery.event, "dropped")
            log.warning("webhook queue full: dropped a %s event for %s", delivery.event, delivery.endpoint.url)
            return 0
        return 1

    def flush(self, timeout: float) -> bool:
        """Wait until every recorded delivery is done (delivered or given up); False if ``timeout`` passed first
        (always, with an outbox, on a replica that does not send)."""
        if self.store is not None:
            return self._wait_outbox(lambda: self._outbox().outbox_pending() == 0, timeout)
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def stop(self, timeout: float) -> bool:
        """Deliver what is due within ``timeout``, then stop. In memory, pending retries are dropped; in the outbox
        they stay for the next start (and this replica's claims are let go). True if nothing was left undone."""
        if self.store is not None:
            return self._stop_outbox(timeout)
        drained = self.flush(timeout) if self._thread.is_alive() else self._queue.empty()
        self._halt(timeout)
        return drained

    def _halt(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(max(timeout, 0.1))
        self._client.close()

    # -- the in-memory delivery thread -------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delivery = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._deliver(delivery)
            finally:
                self._queue.task_done()

    def _deliver(self, delivery: Delivery) -> None:
        delay = self.backoff
        for attempt in range(1, self.max_attempts + 1):
            problem = self._attempt(delivery)
            if problem is None:
                self._count(delivery.event, "delivered")
                return
            if attempt == self.max_attempts or self._stop.wait(delay):
                break
            log.info("webhook %s attempt %d failed (%s); retrying in %.1fs", delivery.endpoint.url, attempt,
                     problem, delay)
            delay = min(delay * 2, self.max_backoff)
        self._count(delivery.event, "failed")
        log.warning("webhook %s: gave up on %s delivery %s after %d attempt(s): %s; check the receiver",
                    delivery.endpoint.url, delivery.event, delivery.id, attempt, problem)

    # -- the outbox sender -------------------------------------------------------------------------
    def _outbox(self) -> Store:
        assert self.store is not None
        return self.store

    def _run_outbox(self) -> None:
        """Send what is due while this replica sends; between rounds, wait for a publish or the next due row."""
        while not self._stop.is_set():
            sent = False
            try:
                if self._sends():
                    sent = self._send_due()
                    self._purge_done()
            except Exception:  # the store did not answer: the rows are still there; try again after a pause
                log.exception("the webhook outbox could not be read or updated; retrying in %.1fs", self.poll)
            with self._round:
                self._round.notify_all()
            if not sent:
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _idle_wait(self) -> float:
        """Until the soonest retry is due, at most ``poll`` (a claim that lapses, a publish by another replica)."""
        try:
            due = self._outbox().outbox_next_due() if self._sends() else None
        except Exception:
            return self.poll
        if due is None:
            return self.poll
        return min(self.poll, max(0.0, (due - utcnow()).total_seconds()))

    def _send_due(self) -> bool:
        """Claim one due row and send it (one at a time: a claim lasts a POST's timeout, not a batch's); True if
        there was one."""
        now = utcnow()
        rows = self._outbox().claim_outbox(self.identity, now, now + timedelta(seconds=self.claim_seconds), 1)
        for row in rows:
            self._send_row(row)
        return bool(rows)

    def _send_row(self, row: OutboxRow) -> None:
        store = self._outbox()
        endpoint = self._endpoint_for(row.receiver, row.event)
        if endpoint is None:
            gone = "no webhook of the config sends this event to this URL any more"
            store.outbox_attempt_failed(row.id, utcnow(), gone, None)
            self._count(row.event, "failed")
            log.warning("webhook %s: dropped %s delivery %s: %s", row.receiver, row.event, row.delivery, gone)
            return
        problem = self._attempt(Delivery(endpoint, row.delivery, row.event, row.body.encode()))
        attempt = row.attempts + 1
        if problem is None:
            store.outbox_delivered(row.id, utcnow())
            self._count(row.event, "delivered")
        elif attempt >= self.max_attempts:
            store.outbox_attempt_failed(row.id, utcnow(), problem, None)
            self._count(row.event, "failed")
            log.warning("webhook %s: gave up on %s delivery %s after %d attempt(s): %s; check the receiver",
                        row.receiver, row.event, row.delivery, attempt, problem)
        else:
            delay = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
            store.outbox_attempt_failed(row.id, utcnow(), problem, utcnow() + timedelta(seconds=delay))
            log.info("webhook %s attempt %d failed (%s); retrying in %.1fs", row.receiver, attempt, problem, delay)

    def _endpoint_for(self, url: str, event: str) -> Endpoint | None:
        """The configured endpoint a row is for (its secret signs it): the first with that URL and event."""
        return next((e for e in self.endpoints if e.url == url and event in e.events), None)

    def _purge_done(self) -> None:
        if time.monotonic() - self._purged_at < OUTBOX_PURGE_INTERVAL:
            return
        self._purged_at = time.monotonic()
        if deleted := self._outbox().purge_outbox(utcnow() - OUTBOX_RETENTION):
            log.info("webhook outbox: %d finished deliveries older than %s deleted", deleted, OUTBOX_RETENTION)

    def _wait_outbox(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()`` (checked after each round of the sender, and every ``poll``) or ``timeout``."""
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._thread.is_alive():
                return False
            with self._round:
                self._round.wait(min(remaining, self.poll))
        return True

    def _nothing_due(self) -> bool:
        due = self._outbox().outbox_next_due()
        return due is None or due > utcnow()

    def _stop_outbox(self, timeout: float) -> bool:
        """Send what is due now within ``timeout`` (not the later retries: they wait in the store), stop, and let
        go of this replica's claims once its sender has stopped (one still mid-POST keeps its claim to lapse)."""
        store = self._outbox()
        idle = self._wait_outbox(self._nothing_due, timeout) if self._thread.is_alive() and self._sends() else True
        self._halt(timeout)
        if not self._thread.is_alive():
            store.release_outbox(self.identity)
        pending = store.outbox_pending()
        if pending:
            log.info("webhooks: %d deliveries wait in the store's outbox; they are sent after the next start",
                     pending)
        return idle

    # -- one attempt -------------------------------------------------------------------------------
    def _attempt(self, delivery: Delivery) -> str | None:
        """POST once; None when the receiver answered 2xx, else what went wrong."""
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "User-Agent": "envlabel-webhooks",
                   "X-Envlabel-Event": delivery.event, "X-Envlabel-Delivery": delivery.id,
                   TIMESTAMP_HEADER: timestamp}
        if delivery.endpoint.secret is not None:
            headers[SIGNATURE_HEADER] = sign(delivery.endpoint.secret, timestamp, delivery.body)
        try:
            response = self._client.post(delivery.endpoint.url, content=delivery.body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if response.is_success else f"HTTP {response.status_code}"

    def _count(self, event: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(event, outcome).inc()
