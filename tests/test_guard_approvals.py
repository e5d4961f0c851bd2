"""The boto3 guard with approvals and audit mode: real boto3 against the moto server, checked by the real envlabel
API (BackgroundServer on loopback) over a real SQLite store. An approval made by another thread through the API
lets the guarded call through once (``protect(..., wait=)``); the next identical call asks again; audit mode lets a
production delete through with a warning."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import pytest

from envlabel.client import Client
from envlabel.config import config_from_dict
from envlabel.errors import ActionDenied, ApprovalRequired
from envlabel.guard.boto3 import protect
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource
from envlabel.parameters import jsonable
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from tests.estates import scan_of

ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's account for the plain test credentials
DB_ARN = f"arn:aws:rds:{REGION}:{ACCOUNT}:db:"
#: names of our own in moto's shared account (other modules' databases are left alone)
PROD, STAGING, AUDITED = "apr-orders-db", "apr-orders-stg-db", "apr-audit-scratch-db"


@dataclass
class Estate:
    moto: str
    envlabel: str


def eventually(condition: Callable[[], Any], what: str, deadline_s: float = 30.0) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"never happened: {what}")


def session() -> Any:
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


def db_names(moto: str) -> set[str]:
    rds = session().client("rds", endpoint_url=moto)
    return {d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]}


def labeled(name: str, environment: str) -> Resource:
    return Resource(DB_ARN + name, "aws", "rds:db", name, ACCOUNT, {"Environment": environment},
                    f"{ACCOUNT}/{REGION}")


@pytest.fixture(scope="module")
def estate(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    rds = session().client("rds", endpoint_url=moto_url)
    for name in (PROD, STAGING, AUDITED):
        rds.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
                               MasterUsername="admin", MasterUserPassword="not-a-secret-1", AllocatedStorage=20)
    resources = [Resource(ACCOUNT, "aws", "aws:account", "test", None, {}, "org"),
                 labeled(PROD, "production"), labeled(STAGING, "staging"), labeled(AUDITED, "production")]
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('guard-approvals') / 'envlabel.db'}")
    now = utcnow()
    commit_scan(store, Taxonomy(), scan_of(resources), now, now)
    config = config_from_dict({"approvers": {"production": ["sre-oncall"], "staging": ["team-lead"]}})
    with BackgroundServer(config, store) as server:
        yield Estate(moto_url, server.url)
    store.close()


@pytest.fixture(autouse=True)
def _no_caller_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ENVLABEL_PRINCIPAL", "ENVLABEL_MODE", "ENVLABEL_TOKEN", "ENVLABEL_URL", "ENVLABEL_FAIL_OPEN"):
        monkeypatch.delenv(name, raising=False)


def guarded_rds(estate: Estate, wait: float | None = None) -> Any:
    rds = session().client("rds", endpoint_url=estate.moto)
    protect(rds, Client(estate.envlabel, principal="agent", interface="guard"), wait=wait)
    return rds


def pending_for(envlabel: str, target: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{envlabel}/v1/approvals", params={"status": "pending"}, timeout=10)
    response.raise_for_status()
    return [a for a in response.json()["approvals"] if a["target"] == target]


def approve_when_pending(envlabel: str, target: str, seen: list[str]) -> threading.Thread:
    """A person in another thread: approves the request for ``target`` once it shows up pending."""
    def act() -> None:
        request = eventually(lambda: pending_for(envlabel, target), f"a pending request for {target}")[0]
        seen.append(request["id"])
        response = httpx.post(f"{envlabel}/v1/approvals/{request['id']}/approve",
                              json={"by": "user:alice", "reason": "staging cleanup, checked"}, timeout=10)
        assert response.status_code == 200, response.text

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


def test_an_approved_staging_delete_goes_through_once_and_the_next_asks_again(estate: Estate) -> None:
    seen: list[str] = []
    approver = approve_when_pending(estate.envlabel, DB_ARN + STAGING, seen)
    guarded_rds(estate, wait=60).delete_db_instance(DBInstanceIdentifier=STAGING, SkipFinalSnapshot=True)
    approver.join(30)
    assert STAGING not in db_names(estate.moto)
    assert len(seen) == 1
    with pytest.raises(ApprovalRequired) as again:  # the approval was spent: a new request, nothing sent
        guarded_rds(estate).delete_db_instance(DBInstanceIdentifier=STAGING, SkipFinalSnapshot=True)
    assert again.value.approval_id not in (None, seen[0])
    assert again.value.approval_id in str(again.value)


def test_a_production_delete_is_denied_without_waiting_and_the_database_exists(estate: Estate) -> None:
    with pytest.raises(ActionDenied) as caught:  # deny is never a request: nothing to wait for
        guarded_rds(estate, wait=60).delete_db_instance(DBInstanceIdentifier=PROD, SkipFinalSnapshot=True)
    assert caught.value.check["environment"] == "production" and "approval" not in caught.value.check
    assert PROD in db_names(estate.moto)


def test_a_denied_request_raises_action_denied_saying_so_and_nothing_is_sent(estate: Estate) -> None:
    target = DB_ARN + PROD

    def deny_when_pending() -> None:  # the person only talks to envlabel
        request = eventually(lambda: pending_for(estate.envlabel, target), "a pending modify request")[0]
        response = httpx.post(f"{estate.envlabel}/v1/approvals/{request['id']}/deny",
                              json={"by": "user:alice", "reason": "not during the freeze"}, timeout=10)
        assert response.status_code == 200, response.text

    person = threading.Thread(target=deny_when_pending, daemon=True)
    person.start()
    with pytest.raises(ActionDenied, match="denied by user:alice: not during the freeze"):
        guarded_rds(estate, wait=60).modify_db_instance(DBInstanceIdentifier=PROD, AllocatedStorage=50,
                                                        ApplyImmediately=True)
    person.join(30)
    rds = session().client("rds", endpoint_url=estate.moto)
    assert rds.describe_db_instances(DBInstanceIdentifier=PROD)["DBInstances"][0]["AllocatedStorage"] == 20


def test_audit_mode_lets_a_production_delete_through_the_guard_with_a_warning(
        estate: Estate, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ENVLABEL_MODE", "audit")
    with caplog.at_level(logging.WARNING, "envlabel"):
        guarded_rds(estate).delete_db_instance(DBInstanceIdentifier=AUDITED, SkipFinalSnapshot=True)
    assert AUDITED not in db_names(estate.moto)
    assert f"envlabel audit mode: would have denied rds:DeleteDBInstance on {DB_ARN + AUDITED}" in caplog.text
    entry = eventually(lambda: httpx.get(f"{estate.envlabel}/v1/decisions", params={"target": DB_ARN + AUDITED},
                                         timeout=10).json()["decisions"], "the logged audit decision")[0]
    assert (entry["mode"], entry["decision"], entry["would_block"], entry["interface"], entry["principal"]) == (
        "audit", "deny", True, "guard", "agent")


def test_parameters_are_json_with_secrets_and_generated_tokens_left_out() -> None:
    params = {"DBInstanceIdentifier": "x", "MasterUserPassword": "hunter2", "ClientToken": "uuid-1",
              "Body": b"abc", "Tags": [{"Key": "a", "Value": "b"}], "When": utcnow().replace(microsecond=0)}
    sent = jsonable(params)
    assert sent["MasterUserPassword"] == sent["ClientToken"] == "<omitted>"
    assert sent["Body"].startswith("<3 bytes sha256:") and sent["Tags"] == [{"Key": "a", "Value": "b"}]
    assert jsonable({**params, "ClientToken": "uuid-2"}) == sent  # a retry is the same call
