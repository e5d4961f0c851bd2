"""Webhooks: signed JSON POSTs when an environment changes, a new high-severity finding appears, or an approval
request is made or decided.

``environment_changed`` and ``finding`` bodies are an envelope ``{"id", "event", "data"}``. The approval events
(``approval_requested``, ``approval_decided``) are sent as :func:`envlabel.service.core.approvals.approval_message`
builds them, with no envelope, so a Slack or Teams incoming webhook renders them as is (``text``, Slack ``blocks``;
the request itself under ``envlabel``); a webhook with ``environments`` gets them only for requests in those
environments (each environment's approvers have a channel of their own). :meth:`WebhookDispatcher.notifier` is the
``notify`` callable an :class:`~envlabel.service.core.authority.Authority` announces them through.

Delivery runs on one background thread with a bounded queue, so a slow or dead receiver never holds up a
scan. A delivery that fails (connection error, timeout, any status outside 2xx) is retried with exponential
backoff (``backoff``, doubling, capped at ``max_backoff``) up to ``max_attempts`` times, then dropped and
counted as ``failed``; every attempt carries the same ``X-Envlabel-Delivery`` id, so a receiver can ignore a
repeat.

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
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from envlabel.config import Webhook
from envlabel.errors import ConfigError
from envlabel.service.core.approvals import APPROVAL_DECIDED, APPROVAL_REQUESTED
from envlabel.service.core.authority import Notify
from envlabel.service.daemon.metrics import ScanMetrics

log = logging.getLogger("envlabel.webhooks")

ENVIRONMENT_CHANGED = "environment_changed"
FINDING = "finding"
#: the events whose body is the approval message itself, filtered by the webhook's ``environments``
APPROVAL_EVENTS = frozenset({APPROVAL_REQUESTED, APPROVAL_DECIDED})
SIGNATURE_HEADER = "X-Envlabel-Signature"
TIMESTAMP_HEADER = "X-Envlabel-Timestamp"


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
    """``publish(events)`` enqueues and returns at once; a background thread POSTs, retrying with backoff."""

    def __init__(self, endpoints: Sequence[Endpoint], metrics: ScanMetrics | None = None, *,
                 max_attempts: int = 6, backoff: float = 1.0, max_backoff: float = 60.0, timeout: float = 10.0,
                 max_queue: int = 10000, client: httpx.Client | None = None) -> None:
        self.endpoints = list(endpoints)
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._queue: queue.Queue[Delivery] = queue.Queue(max_queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="envlabel-webhooks", daemon=True)

    def start(self) -> WebhookDispatcher:
        self._thread.start()
        return self

    def publish(self, events: Sequence[Event]) -> int:
        """Queue ``events`` for every endpoint subscribed to them; returns how many deliveries were queued."""
        queued = 0
        for event in events:
            event_id = str(uuid.uuid4())
            body = json.dumps({"id": event_id, "event": event.kind, "data": event.data},
                              sort_keys=True, default=str).encode()
            for endpoint in self.endpoints:
                if endpoint.wants(event.kind):
                    queued += self._enqueue(Delivery(endpoint, event_id, event.kind, body))
        return queued

    def publish_approval(self, kind: str, message: Mapping[str, Any]) -> int:
        """Queue an approval event whose body is ``message`` (approval_message) for the endpoints subscribed to it
        and to its environment; returns how many deliveries were queued. Never blocks: a check calls it."""
        if kind not in APPROVAL_EVENTS:
            raise ValueError(f"{kind!r} is not an approval event ({', '.join(sorted(APPROVAL_EVENTS))})")
        machine = message.get("envlabel")
        environment = machine.get("environment") if isinstance(machine, Mapping) else None
        body = json.dumps(message, sort_keys=True, default=str).encode()
        delivery_id = str(uuid.uuid4())
        return sum(self._enqueue(Delivery(endpoint, delivery_id, kind, body))
                   for endpoint in self.endpoints if endpoint.wants(kind, environment))

    def notifier(self) -> Notify:
        """The ``notify`` of an Authority: ``Authority(query, notify=dispatcher.notifier())``."""
        def notify(kind: str, message: Mapping[str, Any]) -> None:
            self.publish_approval(kind, message)
        return notify

    def _enqueue(self, delivery: Delivery) -> int:
        try:
            self._queue.put_nowait(delivery)
        except queue.Full:  # a receiver down for long: drop rather than grow without bound
            self._count(delivery.event, "dropped")
            log.warning("webhook queue full: dropped a %s event for %s", delivery.event, delivery.endpoint.url)
            return 0
        return 1

    def flush(self, timeout: float) -> bool:
        """Wait until every queued delivery is done (delivered or given up); False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def stop(self, timeout: float) -> bool:
        """Deliver what is queued within ``timeout``, then stop (pending retries are dropped). True if drained."""
        drained = self.flush(timeout) if self._thread.is_alive() else self._queue.empty()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(max(timeout, 0.1))
        self._client.close()
        return drained

    # -- the delivery thread ---------------------------------------------------------------------
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
