"""envlabel.client.Client: against the real HTTP API (uvicorn on loopback), and its error paths.

The error paths (nothing listening, a server that never answers, 5xx, a
body that is not JSON) use a tiny stdlib http.server, because the real API
cannot be made to misbehave; every answer of substance comes from the real API.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from envlabel.client import Client, ServiceError, raise_for_decision, strictest
from envlabel.config import config_from_dict
from envlabel.errors import ActionDenied, ApprovalRequired, EnvlabelError, TargetError, UnreachableError
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from tests.conftest import free_port
from tests.estates import ACCOUNT, BUCKET, DB, T0, aws_estate, scan_of

TOKEN = "s3cret-reader-token-for-tests"  # at least MIN_TOKEN_LENGTH (20) characters


class _Misbehaving(BaseHTTPRequestHandler):
    """Answers every request with the server's ``reply`` (status, content type, body), or hangs."""

    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn does

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        server: Any = self.server
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw) if raw else None
        server.requests.append((self.command, self.path, dict(self.headers), self.client_address, body))
        if server.reply is None:  # hang until the test is over: the client must time out
            server.release.wait()
            return
        status, content_type, body = server.reply
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    server.daemon_threads = True
    server.reply, server.requests, server.release = None, [], threading.Event()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_port}"
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


def test_the_sdk_imports_without_the_daemon_or_cloud_packages() -> None:
    """An agent installs envlabel without extras: client and guards must import with boto3, botocore,
    kubernetes, fastapi and the daemon packages absent (None in sys.modules makes any import of them fail)."""
    absent = ["boto3", "botocore", "kubernetes", "fastapi", "uvicorn", "click", "discovery", "labelers", "store",
              "service"]
    code = (f"import sys\nfor name in {absent!r}: sys.modules[name] = None\n"
            "import envlabel.client, envlabel.guard, envlabel.guard.boto3, envlabel.guard.kubernetes\n"
            "envlabel.client.Client('http://127.0.0.1:1').close()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_nothing_listening_is_unreachable_and_says_what_to_do() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url) as client, pytest.raises(UnreachableError) as caught:
        client.check("222222222222", "delete")
    assert url in str(caught.value)
    assert "envlabel serve" in str(caught.value) and "ENVLABEL_URL" in str(caught.value)


def test_a_server_that_never_answers_times_out_as_unreachable(stand_in: Any) -> None:
    with Client(stand_in.url, timeout=0.2) as client, pytest.raises(UnreachableError, match="deadline"):
        client.label("222222222222")


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_and_unavailable_statuses_are_unreachable(stand_in: Any, status: int) -> None:
    stand_in.reply = (status, "application/json", json.dumps({"detail": "store not ready"}))
    with Client(stand_in.url) as client, pytest.raises(UnreachableError, match="store not ready"):
        client.check("222222222222", "delete")


def test_internal_error_is_a_service_error_with_the_status(stand_in: Any) -> None:
    stand_in.reply = (500, "text/plain", "boom")
    with Client(stand_in.url) as client, pytest.raises(ServiceError) as caught:
        client.labels(["222222222222"])
    assert caught.value.status == 500 and "boom" in str(caught.value)


def test_a_body_that_is_not_json_is_a_service_error(stand_in: Any) -> None:
    stand_in.reply = (200, "text/html", "<html>some other service</html>")
    with Client(stand_in.url) as client, pytest.raises(ServiceError, match="not JSON"):
        client.label("222222222222")


def test_settings_come_from_the_environment_and_the_connection_is_kept_alive(
        stand_in: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in.reply = (200, "application/json", json.dumps({"target": "222222222222", "decision": "allow"}))
    monkeypatch.setenv("ENVLABEL_URL", stand_in.url + "/")
    monkeypatch.setenv("ENVLABEL_TOKEN", "s3cret")
    with Client() as client:
        assert client.url == stand_in.url
        client.check("222222222222", "read")
        client.check("222222222222", "read")
    assert [r[:2] for r in stand_in.requests] == [("POST", "/v1/check")] * 2
    assert all(r[2]["Authorization"] == "Bearer s3cret" for r in stand_in.requests)
    assert stand_in.requests[0][3] == stand_in.requests[1][3]  # one kept-alive connection


@pytest.mark.parametrize("body", ["[1, 2]", '"allow"', '{"target": "222222222222"}'])
def test_an_answer_that_is_not_check_json_is_a_service_error(stand_in: Any, body: str) -> None:
    stand_in.reply = (200, "application/json", body)
    with Client(stand_in.url) as client, pytest.raises(ServiceError, match="ENVLABEL_URL"):
        client.require("222222222222", "delete")
    stand_in.reply = (200, "application/json", "[1, 2]")
    with Client(stand_in.url) as client, pytest.raises(ServiceError):
        client.labels(["222222222222"])


def test_contents_is_sent_only_when_asked(stand_in: Any) -> None:
    stand_in.reply = (200, "application/json", json.dumps({"target": "222222222222", "decision": "allow"}))
    with Client(stand_in.url) as client:
        client.check("222222222222", "delete")
        client.check("222222222222", "delete", contents=True)
        client.require_all(["222222222222"], "delete", contents=True)
    assert [r[4] for r in stand_in.requests] == [
        {"target": "222222222222", "action": "delete"},
        {"target": "222222222222", "action": "delete", "contents": True},
        {"target": "222222222222", "action": "delete", "contents": True}]


@pytest.mark.timeout(60)
def test_one_deadline_holds_however_the_server_trickles(trickler: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVLABEL_TIMEOUT", "1")
    with Client(trickler) as client:
        assert client.timeout == 1.0
        with pytest.raises(UnreachableError, match="ENVLABEL_TIMEOUT"):
            client.require_all(["222222222222", "333333333333"], "delete")


def test_a_bad_timeout_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("soon", "0", "-1", "nan"):
        monkeypatch.setenv("ENVLABEL_TIMEOUT", value)
        with pytest.raises(EnvlabelError, match="ENVLABEL_TIMEOUT"):
            Client("http://127.0.0.1:9")


def test_a_url_without_scheme_is_refused_with_advice() -> None:
    with pytest.raises(EnvlabelError, match="ENVLABEL_URL"):
        Client("127.0.0.1:8080")


def test_strictest_decision_wins_and_unknown_decisions_deny() -> None:
    checks = [{"target": "a", "decision": "allow"}, {"target": "b", "decision": "require_approval"},
              {"target": "c", "decision": "allow"}]
    assert strictest(checks)["target"] == "b"
    assert strictest([*checks, {"target": "d", "decision": "deny"}])["target"] == "d"
    assert strictest([*checks, {"target": "e", "decision": "maybe"}])["target"] == "e"
    with pytest.raises(ActionDenied):
        raise_for_decision({"target": "e", "decision": "maybe"})
    with pytest.raises(ApprovalRequired):
        raise_for_decision(checks[1])
    assert raise_for_decision(checks[0]) is checks[0]
    with pytest.raises(ValueError):
        strictest([])


# -- against the real API --------------------------------------------------------------------------
@pytest.fixture
def api(tmp_path: Path) -> Iterator[str]:
    """The real API over a real SQLite store: OU Production > account (env=staging) > VPC > db; a bucket.
    Approvers are configured; a reader token is required."""
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    commit_scan(store, Taxonomy(), scan_of(aws_estate()), T0, T0)
    config = config_from_dict({
        "stale_after": "36500d", "approvers": {"production": ["sre-oncall"]},
        "api": {"tokens": [{"name": "agent", "role": "reader", "sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}]},
    })
    with BackgroundServer(config, store) as server:
        yield server.url


def test_label_carries_environment_and_evidence(api: str) -> None:
    with Client(api, token=TOKEN) as client:
        body = client.label(DB)
    assert (body["target"], body["found"], body["environment"]) == (DB, True, "production")
    assert any("/Root/Production" in e["detail"] for e in body["evidence"]), body["evidence"]


def test_labels_keep_the_order_given_and_report_the_never_seen(api: str) -> None:
    unseen = "arn:aws:rds:us-east-1:999999999999:db:orders"
    with Client(api, token=TOKEN) as client:
        bodies = client.labels([BUCKET, unseen, ACCOUNT])
    assert [b["target"] for b in bodies] == [BUCKET, unseen, ACCOUNT]
    assert (bodies[1]["found"], bodies[1]["environment"]) == (False, "unknown")


def test_require_raises_with_the_check_and_returns_it_when_allowed(api: str) -> None:
    with Client(api, token=TOKEN) as client:
        with pytest.raises(ActionDenied) as denied:
            client.require(DB, "rds:DeleteDBInstance")
        with pytest.raises(ApprovalRequired) as approval:
            client.require(DB, "rds:ModifyDBInstance")
        allowed = client.require(DB, "rds:DescribeDBInstances")
    assert denied.value.check["decision"] == "deny" and denied.value.check["environment"] == "production"
    assert denied.value.check["label"]["evidence"]
    assert "rds:DeleteDBInstance" in str(denied.value) and DB in str(denied.value)
    assert approval.value.approvers == ["sre-oncall"]
    assert (allowed["decision"], allowed["action_class"]) == ("allow", "read")


def test_require_all_lets_the_strictest_target_decide(api: str) -> None:
    unseen = "arn:aws:ec2:us-east-1:999999999999:instance/i-0"  # never seen: decided as production
    with Client(api, token=TOKEN) as client, pytest.raises(ApprovalRequired) as caught:
        client.require_all([DB, DB, unseen], "ec2:StopInstances")
    assert caught.value.check["target"] == DB


def test_a_malformed_target_is_a_target_error_naming_the_accepted_forms(api: str) -> None:
    with Client(api, token=TOKEN) as client, pytest.raises(TargetError, match="accepted target forms"):
        client.check("orders-db", "delete")


def test_a_missing_or_wrong_token_says_to_set_envlabel_token(api: str) -> None:
    for token in ("", "wrong"):
        with Client(api, token=token) as client, pytest.raises(ServiceError, match="ENVLABEL_TOKEN") as caught:
            client.label(DB)
        assert caught.value.status == 401
