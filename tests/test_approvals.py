"""Approval requests through the real Authority over a real store (SQLite file and PostgreSQL) populated through
the pipeline: create and reuse, the requester never deciding its own, single use, deny never lifted, expiry,
audit mode, racing spends, one-time link keys, the notification, and its delivery to a real signed webhook."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from envlabel.config import Config, config_from_dict
from envlabel.service.core import approvals
from envlabel.service.core.authority import Authority, Caller
from envlabel.service.core.check import check as check_target
from envlabel.service.core.clock import utcnow
from envlabel.service.core.errors import ApprovalRefused, InvalidRequest, NoApproval, SelfApproval, outcome_of
from envlabel.service.core.query import Query
from envlabel.service.daemon.metrics import Metrics, ScanMetrics
from envlabel.service.daemon.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookDispatcher,
    endpoints_from_config,
    verify,
)
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.api_estate import PROD_DB, STAGING_DB, populate
from tests.postgres_db import fresh_schema
from tests.test_webhooks import Receiver, receiver  # noqa: F401  # the real loopback receiver fixture

BASE_URL = "https://envlabel.example.com"
AGENT = Caller(principal="agent-7", interface="http")
MODIFY, DELETE = "rds:ModifyDBInstance", "rds:DeleteDBInstance"


def config_for(**extra: Any) -> Config:
    return config_from_dict({"approvers": {"production": ["sre-oncall", "dba-lead"], "staging": ["team-lead"]},
                             "approvals": {"base_url": BASE_URL}, **extra})


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'envlabel.db'}"
        return
    with fresh_schema() as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    populate(opened)
    yield opened
    opened.close()


class Notices:
    """What the Authority announced: a real callable standing in for the webhooks (no mock of our code)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Mapping[str, Any]]] = []

    def __call__(self, kind: str, message: Mapping[str, Any]) -> None:
        self.sent.append((kind, message))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.sent]


@pytest.fixture
def notices() -> Notices:
    return Notices()


@pytest.fixture
def authority(store: Store, notices: Notices) -> Authority:
    return Authority(Query(config_for(), store), notify=notices)


def test_a_check_that_requires_approval_opens_one_request_and_reuses_it(authority: Authority,
                                                                        notices: Notices) -> None:
    first = authority.check(AGENT, PROD_DB, MODIFY, parameters={"AllocatedStorage": 100})
    assert first["decision"] == "require_approval"
    approval = first["approval"]
    assert approval["status"] == "pending" and approval["id"].startswith("apr-") and len(approval["id"]) == 16
    assert approval["url"] == f"{BASE_URL}/approvals/{approval['id']}"
    assert any(f"approval request {approval['id']} is pending: ask sre-oncall, dba-lead" in r
               for r in first["reasons"])
    again = authority.check(AGENT, PROD_DB, MODIFY, parameters={"AllocatedStorage": 100})
    assert again["approval"]["id"] == approval["id"]
    other = authority.check(AGENT, PROD_DB, MODIFY, parameters={"AllocatedStorage": 200})
    assert other["approval"]["id"] != approval["id"]
    # another principal's identical call is a request of its own
    assert authority.check(Caller(principal="agent-8"), PROD_DB, MODIFY,
                           parameters={"AllocatedStorage": 100})["approval"]["id"] != approval["id"]
    assert notices.kinds() == ["approval_requested"] * 3
    record = approvals.get_approval(authority.query, approval["id"])
    assert (record["principal"], record["action"], record["target_id"], record["status"]) == \
        ("agent-7", MODIFY, PROD_DB, "pending")
    assert record["parameters_digest"] == approvals.parameters_digest({"AllocatedStorage": 100})
    assert record["check"]["environment"] == "production" and "approval" not in record["check"]


def test_the_requester_cannot_approve_or_deny_its_own_request(authority: Authority) -> None:
    approval_id = authority.check(AGENT, PROD_DB, MODIFY)["approval"]["id"]
    with pytest.raises(SelfApproval, match="the requester cannot approve its own request") as caught:
        approvals.approve(authority, approval_id, "agent-7", "trust me")
    assert outcome_of(caught.value).status == 403
    with pytest.raises(SelfApproval):
        approvals.deny(authority, approval_id, " agent-7 ", "no")
    assert approvals.get_approval(authority.query, approval_id)["status"] == "pending"
    assert authority.check(AGENT, PROD_DB, MODIFY)["decision"] == "require_approval"


def test_an_approved_request_allows_the_same_call_once(authority: Authority, notices: Notices) -> None:
    approval_id = authority.check(AGENT, PROD_DB, MODIFY, parameters={"x": 1})["approval"]["id"]
    decided = approvals.approve(authority, approval_id, "sre-oncall", "maintenance window")
    assert (decided["status"], decided["decided_by"], decided["decision_reason"]) == \
        ("approved", "sre-oncall", "maintenance window")
    assert notices.kinds() == ["approval_requested", "approval_decided"]
    # not for another principal, other parameters, or another action
    assert authority.check(Caller(principal="agent-8"), PROD_DB, MODIFY, parameters={"x": 1})["decision"] \
        == "require_approval"
    assert authority.check(AGENT, PROD_DB, MODIFY, parameters={"x": 2})["decision"] == "require_approval"
    assert authority.check(AGENT, PROD_DB, "rds:CreateDBInstance", parameters={"x": 1})["decision"] \
        == "require_approval"
    allowed = authority.check(AGENT, PROD_DB, "ModifyDBInstance", parameters={"x": 1})  # same canonical action
    assert allowed["decision"] == "allow" and allowed["rule"] == f"approval:{approval_id}"
    assert allowed["approval"]["status"] == "spent" and allowed["approval"]["id"] == approval_id
    assert allowed["reasons"][0] == f"approved by sre-oncall: maintenance window (approval {approval_id}, used once)"
    assert approvals.get_approval(authority.query, approval_id)["status"] == "spent"
    after = authority.check(AGENT, PROD_DB, MODIFY, parameters={"x": 1})
    assert after["decision"] == "require_approval" and after["approval"]["id"] != approval_id
    with pytest.raises(ApprovalRefused, match=f"cannot approve approval request {approval_id}: it is spent"):
        approvals.approve(authority, approval_id, "dba-lead")


def test_a_deny_is_never_turned_into_a_request_nor_approved(authority: Authority, notices: Notices) -> None:
    denied = authority.check(AGENT, PROD_DB, DELETE)
    assert denied["decision"] == "deny" and "approval" not in denied
    with pytest.raises(ApprovalRefused, match="deny cannot be approved") as caught:
        approvals.request_approval(authority, AGENT, PROD_DB, DELETE, reason="please")
    assert outcome_of(caught.value).status == 409
    with pytest.raises(ApprovalRefused, match="allow needs no approval"):
        approvals.request_approval(authority, AGENT, PROD_DB, "rds:DescribeDBInstances")
    assert approvals.list_approvals(authority.query) == {"approvals": []}
    assert notices.sent == []
    # a grant that denies what the policy would ask for: no request either
    granted = Authority(Query(config_for(grants={"agent-7": {"production": ["read"]}}), authority.query.store))
    answer = granted.check(AGENT, PROD_DB, MODIFY)
    assert answer["decision"] == "deny" and "approval" not in answer


def test_a_denied_request_cannot_be_approved(authority: Authority) -> None:
    approval_id = authority.check(AGENT, STAGING_DB, DELETE)["approval"]["id"]
    with pytest.raises(InvalidRequest, match="a deny needs a reason"):
        approvals.deny(authority, approval_id, "team-lead", "  ")
    denied = approvals.deny(authority, approval_id, "team-lead", "that is the wrong database")
    assert denied["status"] == "denied"
    with pytest.raises(ApprovalRefused, match="it is denied by team-lead"):
        approvals.approve(authority, approval_id, "sre-oncall", "overrule")
    retried = authority.check(AGENT, STAGING_DB, DELETE)
    assert retried["decision"] == "require_approval" and retried["approval"]["id"] != approval_id


def test_requests_expire(authority: Authority) -> None:
    now = utcnow()
    later = now + timedelta(days=1, seconds=1)
    pending = authority.finish(AGENT, check_target(authority.query, PROD_DB, MODIFY), now=now)["approval"]
    with pytest.raises(ApprovalRefused, match="it is expired at"):
        approvals.approve(authority, pending["id"], "sre-oncall", now=later)
    assert approvals.get_approval(authority.query, pending["id"], now=later)["status"] == "expired"
    assert [a["id"] for a in approvals.list_approvals(authority.query, "expired", now=later)["approvals"]] \
        == [pending["id"]]
    renewed = authority.finish(AGENT, check_target(authority.query, PROD_DB, MODIFY), now=later)["approval"]
    assert renewed["id"] != pending["id"]
    # approved but not used in time: no allow after the expiry
    approvals.approve(authority, renewed["id"], "sre-oncall", now=later)
    too_late = authority.finish(AGENT, check_target(authority.query, PROD_DB, MODIFY), now=later + timedelta(days=2))
    assert too_late["decision"] == "require_approval" and too_late["approval"]["id"] != renewed["id"]
    assert approvals.expire(authority.query, later + timedelta(days=2)) == 2  # the first pending, the approved one
    assert approvals.get_approval(authority.query, renewed["id"])["status"] == "expired"


def test_audit_mode_and_dry_runs_open_no_request(authority: Authority, notices: Notices) -> None:
    audit = authority.check(Caller(principal="agent-7", mode="audit"), PROD_DB, MODIFY)
    assert audit["mode"] == "audit" and audit["decision"] == "require_approval" and "approval" not in audit
    configured = Authority(Query(config_for(mode="audit"), authority.query.store), notify=notices)
    assert "approval" not in configured.check(AGENT, PROD_DB, MODIFY)
    with pytest.raises(ApprovalRefused, match="audit mode"):
        approvals.request_approval(configured, AGENT, PROD_DB, MODIFY)
    dry = authority.check(Caller(principal="agent-7", dry_run=True), PROD_DB, MODIFY)
    assert dry["decision"] == "require_approval" and "approval" not in dry
    assert approvals.list_approvals(authority.query)["approvals"] == [] and notices.sent == []


def test_an_explicit_request_reuses_the_checks_and_never_spends_an_approval(authority: Authority,
                                                                            notices: Notices) -> None:
    asked = approvals.request_approval(authority, AGENT, PROD_DB, MODIFY, parameters={"x": 1}, reason="resize")
    assert asked["status"] == "pending" and "the requester says: resize" in asked["check"]["reasons"]
    check = authority.check(AGENT, PROD_DB, MODIFY, parameters={"x": 1})
    assert check["approval"]["id"] == asked["id"]
    approvals.approve(authority, asked["id"], "dba-lead")
    again = approvals.request_approval(authority, AGENT, PROD_DB, MODIFY, parameters={"x": 1})
    assert (again["id"], again["status"]) == (asked["id"], "approved")  # asking again does not use it up
    allowed = authority.check(AGENT, PROD_DB, MODIFY, parameters={"x": 1})
    assert allowed["decision"] == "allow" and allowed["reasons"][0].startswith("approved by dba-lead (approval ")
    assert notices.kinds() == ["approval_requested", "approval_decided"]


def test_listing_and_reading_requests(authority: Authority) -> None:
    mine = authority.check(AGENT, PROD_DB, MODIFY)["approval"]["id"]
    theirs = authority.check(Caller(principal="agent-8"), STAGING_DB, DELETE)["approval"]["id"]
    approvals.approve(authority, theirs, "team-lead")
    query = authority.query
    assert [a["id"] for a in approvals.list_approvals(query)["approvals"]] == [theirs, mine]
    assert [a["id"] for a in approvals.list_approvals(query, "pending")["approvals"]] == [mine]
    assert [a["id"] for a in approvals.list_approvals(query, principal="agent-8")["approvals"]] == [theirs]
    with pytest.raises(InvalidRequest, match="'maybe' is not a status; use one of pending"):
        approvals.list_approvals(query, "maybe")
    with pytest.raises(NoApproval, match="no approval request 'apr-000000000000'") as caught:
        approvals.get_approval(query, "apr-000000000000")
    assert outcome_of(caught.value).status == 404
    with pytest.raises(NoApproval):
        approvals.approve(authority, "apr-000000000000", "sre-oncall")


def test_a_link_key_is_only_in_the_notification_and_decides_once(authority: Authority, notices: Notices) -> None:
    approval_id = authority.check(AGENT, PROD_DB, MODIFY)["approval"]["id"]
    kind, message = notices.sent[0]
    link = message["envlabel"]["link"]
    assert kind == "approval_requested" and link.startswith(f"{BASE_URL}/approvals/{approval_id}?key=")
    key = link.partition("?key=")[2]
    assert len(key) >= 32 and link in message["text"]
    query = authority.query
    answers = json.dumps([approvals.get_approval(query, approval_id), approvals.list_approvals(query),
                          authority.check(AGENT, PROD_DB, MODIFY)])
    assert key not in answers
    assert key not in json.dumps(message["envlabel"]["approval"])
    assert approvals.check_link(query, approval_id, key)
    assert not approvals.check_link(query, approval_id, key[:-1] + ("A" if key[-1] != "A" else "B"))
    assert not approvals.check_link(query, approval_id, "")
    assert not approvals.check_link(query, "apr-000000000000", key)
    approvals.deny(authority, approval_id, "sre-oncall", "not now")
    assert not approvals.check_link(query, approval_id, key)  # a link decides its request once
    decided = notices.sent[1][1]
    assert decided["envlabel"]["link"] is None and "?key=" not in decided["text"]


def spend_concurrently(stores: list[Store], approval_id: str) -> list[bool]:
    barrier = threading.Barrier(len(stores))
    results: list[bool] = [False] * len(stores)

    def spend(i: int) -> None:
        barrier.wait()
        results[i] = stores[i].spend_approval(approval_id, utcnow())

    threads = [threading.Thread(target=spend, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_racing_spends_of_one_approval_let_exactly_one_through(authority: Authority, store_url: str) -> None:
    others = [open_store(store_url) for _ in range(3)]
    try:
        for rounds in range(3):
            approval_id = authority.check(AGENT, PROD_DB, MODIFY, parameters={"round": rounds})["approval"]["id"]
            approvals.approve(authority, approval_id, "sre-oncall")
            assert sorted(spend_concurrently([authority.query.store, *others], approval_id)) == \
                [False, False, False, True]
        # and through the whole check: of four callers with their own store, one is allowed
        approval_id = authority.check(AGENT, PROD_DB, MODIFY, parameters={"round": "checks"})["approval"]["id"]
        approvals.approve(authority, approval_id, "sre-oncall")
        checkers = [Authority(Query(authority.config, s)) for s in [authority.query.store, *others]]
        barrier = threading.Barrier(len(checkers))
        decisions: list[str] = []

        def check(checker: Authority) -> None:
            barrier.wait()
            decisions.append(checker.check(AGENT, PROD_DB, MODIFY, parameters={"round": "checks"})["decision"])

        threads = [threading.Thread(target=check, args=(c,)) for c in checkers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(decisions) == ["allow", "require_approval", "require_approval", "require_approval"]
    finally:
        for other in others:
            other.close()


def test_concurrent_identical_checks_share_one_request(authority: Authority, store_url: str,
                                                       notices: Notices) -> None:
    others = [open_store(store_url) for _ in range(3)]
    try:
        checkers = [Authority(Query(authority.config, s), notify=notices) for s in [authority.query.store, *others]]
        barrier = threading.Barrier(len(checkers))
        ids: list[str] = []

        def check(checker: Authority) -> None:
            barrier.wait()
            ids.append(checker.check(AGENT, PROD_DB, MODIFY)["approval"]["id"])

        threads = [threading.Thread(target=check, args=(c,)) for c in checkers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(ids) == 4 and len(set(ids)) == 1
        assert notices.kinds() == ["approval_requested"]
    finally:
        for other in others:
            other.close()


# -- the notification ---------------------------------------------------------------------------------------
def test_the_notification_says_the_environment_in_capitals_and_renders_in_slack_limits(
        authority: Authority, notices: Notices) -> None:
    authority.check(AGENT, PROD_DB, MODIFY)
    message = notices.sent[0][1]
    text = message["text"]
    assert text.startswith("*PRODUCTION* — agent-7 asks to rds:ModifyDBInstance orders")
    assert f"`{PROD_DB}`" in text and "*Principal:* `agent-7`" in text
    # no parameters were sent, so whether the modify sets BackupRetentionPeriod=0 is not known (docs/recovery.md)
    assert "*Reversible:* *unknown* — treated as irreversible" in text
    assert "Approve: `envlabel approvals approve apr-" in text and "Deny: `envlabel approvals deny apr-" in text
    assert "*Why it is PRODUCTION*" in text and "Production" in text  # the OU in the evidence chain
    blocks = message["blocks"]
    assert blocks[0]["type"] == "header" and blocks[0]["text"]["text"].startswith("PRODUCTION — agent-7")
    assert len(blocks) <= 50 and len(blocks[0]["text"]["text"]) <= 150
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")
    assert message["envlabel"]["environment"] == "production"
    assert message["envlabel"]["approval"]["status"] == "pending"
    json.dumps(message)  # a JSON body as is


def test_the_notification_shows_lookalikes_irreversibility_and_escapes_hostile_names(authority: Authority) -> None:
    record = approvals.request_approval(authority, AGENT, STAGING_DB, DELETE)
    check = record["check"]
    check["label"]["name"] = "orders <!channel> <https://evil.example|approve>"
    check["label"]["evidence"][0]["detail"] = "OU `x`\n*Approved* by sre-oncall"
    check["lookalikes"] = [{"target": PROD_DB, "environment": "production", "kind": "rds:db", "name": "orders",
                            "note": f"orders also exists in production: {PROD_DB}"}]
    check["label"]["kind"] = "rds:db"
    message = approvals.approval_message(record, BASE_URL, None)
    text = message["text"]
    assert text.startswith("*STAGING* — agent-7 asks to rds:DeleteDBInstance orders &lt;!channel&gt;")
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "\n*Approved* by sre-oncall" not in text  # a line break in a value cannot start a line of its own
    assert f"orders also exists in *PRODUCTION*: `{PROD_DB}`" in text
    assert "*Reversible:* *unknown* — treated as irreversible" in text  # the twin's facts were never scanned
    assert f"Or open the approval page: {BASE_URL}/approvals/{record['id']}\n" in text  # no key: no ?key=
    huge = copy.deepcopy(record)
    huge["principal"] = "p" * 5000
    blocks = approvals.approval_message(huge, BASE_URL, None)["blocks"]
    assert len(blocks[0]["text"]["text"]) <= 150
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")


def test_approval_events_reach_a_signed_webhook_of_their_environment_only(receiver: Receiver,  # noqa: F811
                                                                          store: Store,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    config = config_for(webhooks=[
        {"url": receiver.url, "secret_env": "HOOK_SECRET", "environments": ["production"]},
        {"url": receiver.url + "/findings-only", "events": ["finding"]},
    ])
    metrics = ScanMetrics(Metrics().registry)
    hooks = WebhookDispatcher(endpoints_from_config(config.webhooks), metrics, backoff=0.001).start()
    try:
        authority = Authority(Query(config, store), notify=hooks.notifier())
        staging = authority.check(AGENT, STAGING_DB, DELETE)["approval"]["id"]  # not for the production channel
        production = authority.check(AGENT, PROD_DB, MODIFY)["approval"]["id"]
        approvals.approve(authority, production, "sre-oncall", "ok")
        approvals.approve(authority, staging, "team-lead", "ok")
        assert hooks.flush(30)
    finally:
        hooks.stop(5)
    assert [r.headers["X-Envlabel-Event"] for r in receiver.requests] == ["approval_requested", "approval_decided"]
    for request in receiver.requests:
        assert request.headers[SIGNATURE_HEADER].startswith("sha256=")
        assert verify(b"s3cret", request.headers[TIMESTAMP_HEADER], request.body, request.headers[SIGNATURE_HEADER])
        assert request.json["envlabel"]["approval"]["id"] == production
        assert request.json["text"].startswith("*PRODUCTION* — agent-7 asks to rds:ModifyDBInstance")
    requested, decided = (r.json for r in receiver.requests)
    assert requested["envlabel"]["link"].startswith(f"{BASE_URL}/approvals/{production}?key=")
    assert "*Approved* by `sre-oncall`: ok" in decided["text"]
    assert staging not in b"".join(r.body for r in receiver.requests).decode()
