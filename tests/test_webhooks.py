"""Webhooks against a real loopback HTTP receiver: signatures, retries with backoff, giving up, subscriptions,
and the daemon announcing environment changes and new high-severity findings once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from envlabel.config import Webhook, config_from_dict
from envlabel.errors import ConfigError
from envlabel.model import Resource
from envlabel.service.daemon.metrics import Metrics, ScanMetrics
from envlabel.service.daemon.scheduler import Daemon
from envlabel.service.daemon.webhooks import (
    ENVIRONMENT_CHANGED,
    FINDING,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Endpoint,
    Event,
    WebhookDispatcher,
    endpoints_from_config,
    verify,
)
from envlabel.store import open_store
from tests.estates import scan_of

SECRET = b"s3cret"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.body)
        return body


@dataclass
class Receiver:
    """Answers 500 to the first ``failures`` requests, then 204; keeps every request."""

    failures: int = 0
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        self.requests.append(Received(headers, body))
        return 500 if len(self.requests) <= self.failures else 204


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(state.handle(dict(self.headers.items()), body))
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


def dispatcher(endpoints: list[Endpoint], metrics: ScanMetrics, **kwargs: Any) -> WebhookDispatcher:
    # backoff is tiny so retries are quick; nothing asserts on how long they took
    return WebhookDispatcher(endpoints, metrics, backoff=0.001, max_backoff=0.01, **kwargs).start()


def delivered(metrics: ScanMetrics, event: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value("envlabel_webhook_deliveries_total", {"event": event, "outcome": outcome})
    return value or 0.0


def test_a_failing_receiver_gets_the_same_signed_delivery_until_it_accepts(receiver: Receiver) -> None:
    receiver.failures = 2
    metrics = ScanMetrics(Metrics().registry)
    hooks = dispatcher([Endpoint(receiver.url, SECRET, frozenset({ENVIRONMENT_CHANGED}))], metrics)
    assert hooks.publish([Event(ENVIRONMENT_CHANGED, {"target": "123456789012", "before": "staging",
                                                      "environment": "production"})]) == 1
    assert hooks.flush(30)
    hooks.stop(5)
    assert len(receiver.requests) == 3
    assert len({r.headers["X-Envlabel-Delivery"] for r in receiver.requests}) == 1
    for request in receiver.requests:
        assert request.headers[SIGNATURE_HEADER].startswith("sha256=")
        assert verify(SECRET, request.headers[TIMESTAMP_HEADER], request.body, request.headers[SIGNATURE_HEADER])
        assert not verify(b"wrong", request.headers[TIMESTAMP_HEADER], request.body, request.headers[SIGNATURE_HEADER])
        assert request.headers["X-Envlabel-Event"] == ENVIRONMENT_CHANGED
    body = receiver.requests[-1].json
    assert body["event"] == ENVIRONMENT_CHANGED and body["id"] == receiver.requests[0].headers["X-Envlabel-Delivery"]
    assert body["data"] == {"target": "123456789012", "before": "staging", "environment": "production"}
    assert (delivered(metrics, ENVIRONMENT_CHANGED, "delivered"), delivered(metrics, ENVIRONMENT_CHANGED, "failed")) \
        == (1, 0)


def test_delivery_gives_up_after_max_attempts(receiver: Receiver) -> None:
    receiver.failures = 100
    metrics = ScanMetrics(Metrics().registry)
    hooks = dispatcher([Endpoint(receiver.url, SECRET, frozenset({FINDING}))], metrics, max_attempts=4)
    hooks.publish([Event(FINDING, {"target": "x", "kind": "unlabeled"})])
    assert hooks.flush(30)
    hooks.stop(5)
    assert len(receiver.requests) == 4
    assert (delivered(metrics, FINDING, "delivered"), delivered(metrics, FINDING, "failed")) == (0, 1)


def test_unreachable_receiver_is_retried_then_counted_failed() -> None:
    metrics = ScanMetrics(Metrics().registry)
    from tests.conftest import free_port

    hooks = dispatcher([Endpoint(f"http://127.0.0.1:{free_port()}/", None, frozenset({FINDING}))], metrics,
                       max_attempts=2)
    hooks.publish([Event(FINDING, {"target": "x"})])
    assert hooks.flush(30)
    hooks.stop(5)
    assert delivered(metrics, FINDING, "failed") == 1


def test_subscriptions_and_unsigned_webhooks(receiver: Receiver) -> None:
    endpoints = endpoints_from_config([Webhook(url=receiver.url, events=["finding"])], environ={})
    hooks = dispatcher(endpoints, ScanMetrics(Metrics().registry))
    assert hooks.publish([Event(ENVIRONMENT_CHANGED, {"target": "a"}), Event(FINDING, {"target": "b"})]) == 1
    assert hooks.flush(30)
    hooks.stop(5)
    assert [r.json["event"] for r in receiver.requests] == [FINDING]
    assert SIGNATURE_HEADER not in receiver.requests[0].headers and TIMESTAMP_HEADER in receiver.requests[0].headers


def test_a_missing_secret_variable_fails_the_start_naming_it() -> None:
    hooks = [Webhook(url="https://example.invalid/a", secret_env="HOOK_SECRET")]
    with pytest.raises(ConfigError, match=r"webhooks\.0\.secret_env: the environment variable HOOK_SECRET"):
        endpoints_from_config(hooks, environ={})
    assert endpoints_from_config(hooks, environ={"HOOK_SECRET": "x"})[0].secret == b"x"


def estate(account_env: str) -> list[Resource]:
    account = Resource("222222222222", "aws", "aws:account", "orders", None, {"env": account_env}, "org")
    bucket = Resource("arn:aws:s3:::orders-exports", "aws", "s3:bucket", "orders-exports", "222222222222", {},
                      "222222222222/us-east-1")
    bare = Resource("333333333333", "aws", "aws:account", "legacy", None, {}, "org")  # unlabeled: high
    return [account, bucket, bare]


def test_daemon_announces_environment_changes_and_new_high_findings_once(receiver: Receiver, tmp_path: Path) -> None:
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'e.db'}", "sources": [{"name": "aws", "type": "aws"}],
                               "webhooks": [{"url": receiver.url, "secret_env": "HOOK_SECRET"}]})
    store = open_store(config.store)
    metrics = ScanMetrics(Metrics().registry)
    hooks = dispatcher(endpoints_from_config(config.webhooks, {"HOOK_SECRET": "s3cret"}), metrics)
    scans = iter([scan_of(estate("staging")), scan_of(estate("production"))])
    daemon = Daemon(config, store, metrics, webhooks=hooks, scan=lambda source: next(scans))
    daemon.reporter.prime()
    try:
        daemon.run_scan("aws")  # first labels: new, not changes; the unlabeled account is a new high finding
        assert hooks.flush(30)
        first = [r.json for r in receiver.requests]
        assert [(b["event"], b["data"]["target"], b["data"]["kind"]) for b in first] == [
            (FINDING, "333333333333", "unlabeled")]
        daemon.run_scan("aws")  # the account and the bucket in it become production; the finding is not new
        assert hooks.flush(30)
        second = [r.json for r in receiver.requests[len(first):]]
    finally:
        hooks.stop(5)
        store.close()
    changes = {b["data"]["target"]: b["data"] for b in second if b["event"] == ENVIRONMENT_CHANGED}
    assert [b["event"] for b in second] == [ENVIRONMENT_CHANGED] * 2
    assert {t: (d["before"], d["environment"]) for t, d in changes.items()} == {
        "222222222222": ("staging", "production"), "arn:aws:s3:::orders-exports": ("staging", "production")}
    assert changes["222222222222"]["label"]["decided_by"] == "tag"
    assert metrics.registry.get_sample_value("envlabel_environment_changes_total") == 2


def test_serve_refuses_to_start_without_a_webhook_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.estates import cli, write_config

    monkeypatch.delenv("HOOK_SECRET", raising=False)
    config = write_config(tmp_path, webhooks=[{"url": "https://hooks.example.com/", "secret_env": "HOOK_SECRET"}])
    result = cli(config, "serve", "--port", "0")
    assert result.exit_code == 2  # a config the user must fix is a usage error
    assert "webhooks.0.secret_env: the environment variable HOOK_SECRET is not set" in result.stderr
