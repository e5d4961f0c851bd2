"""The webhook outbox in the store, against real loopback HTTP receivers: a delivery still retrying when the
dispatcher stops is sent after it starts again with the same idempotency key, a sender killed mid-delivery is
followed by one that resends under the same key, two senders never send one row twice, label changes made while
the daemon was down are announced once after it starts, and a follower refreshes the gauges without announcing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from envlabel.config import config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.daemon.leader import leadership_for
from envlabel.service.daemon.metrics import ScanMetrics
from envlabel.service.daemon.scheduler import Daemon
from envlabel.service.daemon.webhooks import (
    APPROVAL_REQUESTED,
    ENVIRONMENT_CHANGED,
    FINDING,
    IDEMPOTENCY_KEY,
    Endpoint,
    Event,
    WebhookDispatcher,
)
from envlabel.store import open_store
from envlabel.store.outbox import HISTORY_MARK_KEY
from envlabel.store.sql import Store
from tests.estates import scan_of
from tests.postgres_db import fresh_schema
from tests.test_webhooks import estate

DELIVERY = "X-Envlabel-Delivery"
EVENTS = frozenset({ENVIRONMENT_CHANGED, FINDING, APPROVAL_REQUESTED})


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def key(self) -> str:
        return self.headers[DELIVERY]

    @property
    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.body)
        return body


@dataclass
class Receiver:
    """A receiver that answers 500 while ``down``, holds a request while ``hold`` is set (until ``release``), and
    keeps every request; ``accepted`` are the keys it answered 2xx, as a deduping receiver keeps them."""

    url: str = ""
    down: bool = False
    hold: bool = False
    requests: list[Received] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    release: threading.Event = field(default_factory=threading.Event)

    def handle(self, received: Received) -> int:
        with self.changed:
            self.requests.append(received)
            hold, down = self.hold, self.down
            self.changed.notify_all()
        if hold:
            self.release.wait(30)
            return 204
        if down:
            return 500
        with self.changed:
            self.accepted.append(received.key)
            self.changed.notify_all()
        return 204

    def wait_for(self, what: str, condition: Any) -> None:
        """Wait (on the receiver's condition, never a sleep) until ``condition()``."""
        with self.changed:
            assert self.changed.wait_for(condition, 30), f"the receiver never saw {what}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.handle(Received(dict(self.headers.items()), body))
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:  # the sender died while the request was held
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outbox.db'}"
        return
    with fresh_schema() as url:
        yield url


def dispatcher(store: Store, receiver: Receiver, **kwargs: Any) -> WebhookDispatcher:
    # backoff is tiny so retries come quickly; nothing asserts on how long anything took
    options: dict[str, Any] = {"backoff": 0.01, "max_backoff": 0.05, "max_attempts": 1000, "poll": 0.05} | kwargs
    return WebhookDispatcher([Endpoint(receiver.url, None, EVENTS)], ScanMetrics(CollectorRegistry()),
                             store=store, **options)


def test_a_delivery_still_retrying_at_stop_is_sent_once_after_a_restart(store_url: str, receiver: Receiver) -> None:
    receiver.down = True
    store = open_store(store_url)
    first = dispatcher(store, receiver).start()
    assert first.publish([Event(ENVIRONMENT_CHANGED, {"target": "123456789012", "environment": "production"})]) == 1
    receiver.wait_for("a retry", lambda: len(receiver.requests) >= 2)
    first.stop(0.5)  # the receiver is still down: the delivery is left in the store
    store.close()

    store = open_store(store_url)  # a new process: a new store connection, a new dispatcher identity
    try:
        [row] = store.outbox_deliveries()
        assert row["delivered_at"] is None and row["failed_at"] is None and row["attempts"] >= 2
        assert store._query("SELECT claimed_by FROM outbox")[0][0] is None  # a clean stop let go of its claim
        receiver.down = False
        second = dispatcher(store, receiver).start()
        assert second.flush(30)
        second.stop(5)
        [row] = store.outbox_deliveries()
        assert row["delivered_at"] is not None
    finally:
        store.close()
    keys = {r.key for r in receiver.requests}
    assert len(keys) == 1 and receiver.accepted == [row["delivery"]]  # one key on every attempt, one accepted
    assert {r.json[IDEMPOTENCY_KEY] for r in receiver.requests} == keys == {receiver.requests[0].json["id"]}
    assert row["attempts"] == len(receiver.requests)


SENDER = """
import sys
from envlabel.service.daemon.webhooks import ENVIRONMENT_CHANGED, Endpoint, Event, WebhookDispatcher
from envlabel.store import open_store

store = open_store(sys.argv[1])
hooks = WebhookDispatcher([Endpoint(sys.argv[2], None, frozenset({ENVIRONMENT_CHANGED}))], store=store,
                          timeout=1.0, claim_seconds=1.5, poll=0.05).start()
hooks.publish([Event(ENVIRONMENT_CHANGED, {"target": "123456789012", "environment": "production"})])
hooks.flush(60)
"""


def test_a_sender_killed_mid_delivery_is_followed_by_a_resend_under_the_same_key(tmp_path: Path,
                                                                                 receiver: Receiver) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    receiver.hold = True  # the receiver takes the request and has not answered when the sender dies
    sender = subprocess.Popen([sys.executable, "-c", SENDER, url, receiver.url])
    try:
        receiver.wait_for("the first delivery", lambda: len(receiver.requests) == 1)
    finally:
        os.kill(sender.pid, signal.SIGKILL)
        sender.wait(30)
    receiver.hold = False
    receiver.release.set()
    store = open_store(url)
    try:
        [row] = store.outbox_deliveries()
        assert row["delivered_at"] is None  # the dead sender never learned it was taken
        successor = dispatcher(store, receiver).start()  # its claim lapses; then the row is due again
        assert successor.flush(30)
        successor.stop(5)
        assert store.outbox_deliveries()[0]["delivered_at"] is not None
    finally:
        store.close()
    assert len(receiver.requests) == 2
    assert receiver.requests[0].key == receiver.requests[1].key == receiver.requests[1].json[IDEMPOTENCY_KEY]
    assert receiver.requests[0].body == receiver.requests[1].body


def test_two_senders_on_one_store_never_send_one_row_twice(store_url: str, receiver: Receiver) -> None:
    stores = [open_store(store_url)]
    stores.append(open_store(store_url))
    senders = [dispatcher(s, receiver).start() for s in stores]  # both believe they lead (a split brain)
    try:
        published = sum(senders[i % 2].publish([Event(FINDING, {"target": f"t{i}", "kind": "unlabeled"})])
                        for i in range(30))
        assert published == 30
        assert all(s.flush(30) for s in senders)
    finally:
        for s in senders:
            s.stop(5)
        for s in stores:
            s.close()
    assert len(receiver.requests) == 30 and len(set(receiver.accepted)) == 30


def test_a_finished_delivery_keeps_no_approval_link_key_in_the_store(tmp_path: Path, receiver: Receiver) -> None:
    """An approval_requested body holds the request's one-time link key, which the store otherwise keeps only as
    a hash: once the delivery is done, the outbox row keeps its outcome and not the body."""
    store = open_store(f"sqlite:///{tmp_path / 'outbox.db'}")
    hooks = dispatcher(store, receiver).start()
    try:
        message = {"text": "approve: https://envlabel.example/approvals/a1?key=LINKKEY123",
                   "envlabel": {"id": "a1", "environment": "production"}}
        assert hooks.publish_approval(APPROVAL_REQUESTED, message) == 1
        assert hooks.flush(30)
    finally:
        hooks.stop(5)
    try:
        assert "LINKKEY123" in receiver.requests[0].json["text"]
        assert receiver.requests[0].json[IDEMPOTENCY_KEY] == receiver.requests[0].key
        assert store._query("SELECT body FROM outbox") == [("",)]
    finally:
        store.close()
    assert b"LINKKEY123" not in (tmp_path / "outbox.db").read_bytes()


def test_label_changes_made_while_the_daemon_was_down_are_announced_once_after_it_starts(
        store_url: str, receiver: Receiver) -> None:
    config = config_from_dict({"store": store_url, "sources": [{"name": "aws", "type": "aws"}]})
    store = open_store(store_url)
    try:
        first = Daemon(config, store, ScanMetrics(CollectorRegistry()), webhooks=dispatcher(store, receiver),
                       scan=lambda source: scan_of(estate("staging")), watch=False)
        first.reporter.prime()
        first.run_scan("aws")  # the first labels: new, not changes
        first.tick()
        assert store.meta_value(HISTORY_MARK_KEY) == str(store.history_mark())
        # the daemon is down; a scan by hand (`envlabel scan`) moves the account and its bucket to production
        commit_scan(store, Taxonomy.from_config(config), scan_of(estate("production")), utcnow())
        for _ in range(2):  # two starts: the second has nothing left to announce
            hooks = dispatcher(store, receiver)
            daemon = Daemon(config, store, ScanMetrics(CollectorRegistry()), webhooks=hooks, watch=False)
            daemon.reporter.prime()
            hooks.start()  # no leadership: this daemon leads
            daemon.tick()
            assert hooks.flush(30)
            hooks.stop(5)
    finally:
        store.close()
    changes = [r.json["data"] for r in receiver.requests if r.json["event"] == ENVIRONMENT_CHANGED]
    assert sorted((c["target"], c["before"], c["environment"]) for c in changes) == [
        ("222222222222", "staging", "production"), ("arn:aws:s3:::orders-exports", "staging", "production")]
    assert len(set(receiver.accepted)) == len(receiver.accepted)


def test_two_replicas_announcing_one_change_write_it_once(tmp_path: Path, receiver: Receiver) -> None:
    """A stale leader that still believes it leads reports the same changes: the stored mark moved, so it writes
    no second delivery (which would carry a different key)."""
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    config = config_from_dict({"store": url, "sources": [{"name": "aws", "type": "aws"}]})
    store = open_store(url)
    try:
        commit_scan(store, Taxonomy.from_config(config), scan_of(estate("staging")), utcnow())
        replicas = [Daemon(config, store, ScanMetrics(CollectorRegistry()), webhooks=dispatcher(store, receiver),
                           watch=False) for _ in range(2)]
        for replica in replicas:
            replica.reporter.prime()
        commit_scan(store, Taxonomy.from_config(config), scan_of(estate("production")), utcnow())
        for replica in replicas:
            replica.tick()
        rows = store.outbox_deliveries()
        assert sorted(r["event"] for r in rows) == [ENVIRONMENT_CHANGED] * 2  # the account and its bucket, once
    finally:
        store.close()


@pytest.mark.postgres
def test_a_follower_refreshes_the_gauges_and_announces_nothing(receiver: Receiver) -> None:
    with fresh_schema() as url:
        config = config_from_dict({"store": url, "sources": [{"name": "aws", "type": "aws"}],
                                   "leader_election": {"kind": "advisory_lock"}})
        leader_store, follower_store = open_store(url), open_store(url)
        a, b = (leadership_for(config, s, identity=name) for s, name in ((leader_store, "a"), (follower_store, "b")))
        assert a is not None and b is not None and a.step() and not b.step()
        registries = CollectorRegistry(), CollectorRegistry()
        scans = iter([scan_of(estate("staging"))])
        leader = Daemon(config, leader_store, ScanMetrics(registries[0]), scan=lambda source: next(scans),
                        webhooks=dispatcher(leader_store, receiver), watch=False, leadership=a)
        follower = Daemon(config, follower_store, ScanMetrics(registries[1]),
                          webhooks=dispatcher(follower_store, receiver), watch=False, leadership=b)
        try:
            for daemon in (follower, leader):
                daemon.reporter.prime()
                assert daemon.webhooks is not None
                daemon.webhooks.start(sends=lambda daemon=daemon: daemon.leads)  # type: ignore[misc]
            assert follower.run_scan("aws") is None  # a follower does not scan
            assert leader.run_scan("aws") is not None
            assert leader.webhooks is not None and leader.webhooks.flush(30)
            announced = len(receiver.requests)
            assert announced == 1  # the unlabeled account, a new high finding: from the leader
            follower.tick()
            sample = registries[1].get_sample_value
            assert sample("envlabel_resources", {"provider": "aws", "environment": "staging"}) == 2
            assert sample("envlabel_findings", {"kind": "unlabeled", "severity": "high"}) == 1
            assert store_rows(follower_store) == announced  # the follower wrote nothing to announce
            # an approval request made on the follower is recorded there and sent by the leader's sender
            assert follower.webhooks is not None
            follower.webhooks.publish_approval(APPROVAL_REQUESTED, {"text": "approve?",
                                                                   "envlabel": {"environment": "production"}})
            receiver.wait_for("the approval request", lambda: len(receiver.accepted) == announced + 1)
            assert receiver.requests[-1].headers["X-Envlabel-Event"] == APPROVAL_REQUESTED
        finally:
            for daemon in (leader, follower):
                assert daemon.webhooks is not None
                daemon.webhooks.stop(5)
            a.stop()
            b.stop()
            leader_store.close()
            follower_store.close()


def store_rows(store: Store) -> int:
    return len(store.outbox_deliveries())
