"""The SDK's principal, mode and approvals against the real API (BackgroundServer on loopback, a real SQLite store
filled through the pipeline): the headers reach the server, ``ApprovalRequired`` carries the request id, and
``wait_for_approval`` returns once another thread approves the request through the API."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from envlabel.client import Client, raise_for_decision
from envlabel.errors import ActionDenied, ApprovalRequired, EnvlabelError
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from tests.api_estate import ADMIN_TOKEN, PROD_DB, READER_TOKEN, STAGING_DB, TOKENS, make_config, populate

DELETE = "rds:DeleteDBInstance"


def eventually(condition: Callable[[], Any], what: str, deadline_s: float = 20.0) -> Any:
    """Wait for ``condition`` to hold, failing with ``what`` when it never does."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"never happened: {what}")


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("ENVLABEL_PRINCIPAL", "ENVLABEL_MODE", "ENVLABEL_TOKEN", "ENVLABEL_URL"):
        monkeypatch.delenv(name, raising=False)
    db = tmp_path / "envlabel.db"
    store = open_store(f"sqlite:///{db}")
    populate(store)
    with BackgroundServer(make_config(str(db)), store) as running:
        yield running.url
    store.close()


@pytest.fixture
def tokened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("ENVLABEL_PRINCIPAL", "ENVLABEL_MODE", "ENVLABEL_TOKEN", "ENVLABEL_URL"):
        monkeypatch.delenv(name, raising=False)
    db = tmp_path / "envlabel.db"
    store = open_store(f"sqlite:///{db}")
    populate(store)
    with BackgroundServer(make_config(str(db), tokens=TOKENS), store) as running:
        yield running.url
    store.close()


def logged(url: str, token: str | None = None) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{url}/v1/decisions", headers=headers, timeout=10)
    response.raise_for_status()
    decisions: list[dict[str, Any]] = response.json()["decisions"]
    return decisions


def test_the_principal_mode_and_interface_headers_reach_the_server(server: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVLABEL_PRINCIPAL", "ci-deployer")
    with Client(server, interface="guard") as envlabel:
        assert envlabel.check(PROD_DB, DELETE)["principal"] == "ci-deployer"
    with Client(server, principal="user:alice") as envlabel:  # the argument wins over the environment
        assert envlabel.check(PROD_DB, DELETE)["principal"] == "user:alice"
    entry = eventually(lambda: [d for d in logged(server) if d["principal"] == "ci-deployer"], "the logged check")
    assert (entry[0]["interface"], entry[0]["target"]) == ("guard", PROD_DB)


def test_a_token_is_authoritative_and_a_claim_is_recorded_beside_it(tokened: str) -> None:
    with Client(tokened, READER_TOKEN, principal="ops") as envlabel:  # the reader token claims the admin's name
        body = envlabel.check(STAGING_DB, DELETE)
    assert (body["principal"], body.get("claimed_principal")) == ("agent", "ops")


def test_approval_required_carries_the_request_and_wait_returns_when_another_thread_approves(
        server: str) -> None:
    with Client(server, principal="agent") as envlabel:
        with pytest.raises(ApprovalRequired) as caught:
            envlabel.require(STAGING_DB, DELETE, parameters={"SkipFinalSnapshot": True})
        approval_id = caught.value.approval_id
        assert approval_id is not None and approval_id.startswith("apr-")
        assert approval_id in str(caught.value)
        assert envlabel.approval(approval_id)["status"] == "pending"

        def approve_once_seen_pending() -> None:
            with Client(server, principal="user:alice") as approver:
                eventually(lambda: approver.approval(approval_id)["status"] == "pending", "the pending request")
                response = httpx.post(f"{server}/v1/approvals/{approval_id}/approve",
                                      json={"by": "user:alice", "reason": "checked the twin"}, timeout=10)
                assert response.status_code == 200, response.text

        approver = threading.Thread(target=approve_once_seen_pending)
        approver.start()
        record = envlabel.wait_for_approval(approval_id, timeout=60)
        approver.join(30)
        assert (record["status"], record["decided_by"]) == ("approved", "user:alice")
        # the same call is allowed once, then asks again
        assert envlabel.require(STAGING_DB, DELETE, parameters={"SkipFinalSnapshot": True})["rule"] == \
            f"approval:{approval_id}"
        with pytest.raises(ApprovalRequired) as again:
            envlabel.require(STAGING_DB, DELETE, parameters={"SkipFinalSnapshot": True})
        assert again.value.approval_id not in (None, approval_id)


def test_wait_for_approval_gives_up_with_the_pending_record(server: str) -> None:
    with Client(server, principal="agent") as envlabel:
        approval_id = envlabel.check(STAGING_DB, DELETE)["approval"]["id"]
        assert envlabel.wait_for_approval(approval_id, timeout=0.3)["status"] == "pending"


def test_request_approval_before_trying_and_the_requester_cannot_approve_it(tokened: str) -> None:
    with Client(tokened, ADMIN_TOKEN) as ops:  # the admin asks for itself: it may not approve its own
        record = ops.request_approval(STAGING_DB, DELETE, {"SkipFinalSnapshot": True}, reason="cleanup")
        assert (record["status"], record["principal"]) == ("pending", "ops")
        response = httpx.post(f"{tokened}/v1/approvals/{record['id']}/approve", json={"reason": "me"},
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
        assert response.status_code in (403, 409)
        assert ops.approval(record["id"])["status"] == "pending"


def test_audit_mode_lets_the_answer_through_with_a_warning(server: str, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ENVLABEL_MODE", "audit")
    with Client(server, principal="agent") as envlabel, caplog.at_level(logging.WARNING, "envlabel.client"):
        body = envlabel.require(PROD_DB, DELETE)
    assert (body["decision"], body["mode"]) == ("deny", "audit")
    assert "envlabel audit mode: would have denied rds:DeleteDBInstance" in caplog.text
    with pytest.raises(ActionDenied):  # the same answer enforced
        raise_for_decision({**body, "mode": "enforce"})


def test_a_bad_mode_or_principal_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVLABEL_MODE", "shadow")
    with pytest.raises(EnvlabelError, match=r"ENVLABEL_MODE='shadow'.*enforce, audit"):
        Client("http://127.0.0.1:9")
    monkeypatch.delenv("ENVLABEL_MODE")
    with pytest.raises(EnvlabelError, match="ENVLABEL_PRINCIPAL"):
        Client("http://127.0.0.1:9", principal="two words")
