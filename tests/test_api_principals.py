"""Principals over the real HTTP API: the token's principal decides, grants apply, a claim only narrows, and
``X-Envlabel-Mode: audit`` reports without enforcing (real BackgroundServer, real SQLite, httpx)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from envlabel.store.sql import Store
from tests.api_callers import AGENT, DEPLOYER, OPS, bearer, check, served, still_there
from tests.api_estate import PROD_DB, SANDBOX_DB, STAGING_DB


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Store]]:
    with served(tmp_path_factory.mktemp("principals")) as (url, store), httpx.Client(base_url=url) as client:
        yield client, store


def test_the_token_principal_and_the_deciding_rule_are_in_the_answer(api: tuple[httpx.Client, Store]) -> None:
    client, _ = api
    sandbox = check(client, DEPLOYER, SANDBOX_DB, "rds:DeleteDBInstance")
    assert (sandbox["principal"], sandbox["decision"], sandbox["rule"]) == ("ci-deployer", "allow",
                                                                            "policy.sandbox.delete")
    assert "claimed_principal" not in sandbox and sandbox["mode"] == "enforce"
    staging = check(client, DEPLOYER, STAGING_DB, "rds:DeleteDBInstance")  # the grant gives no delete there
    assert (staging["decision"], staging["rule"]) == ("deny", "grants.ci-deployer.staging")
    assert "approval" not in staging  # a grant's deny is not something to approve
    assert any("grant ci-deployer" in reason for reason in staging["reasons"])


def test_a_token_without_a_grant_of_its_own_is_decided_by_its_groups_grant(api: tuple[httpx.Client, Store]) -> None:
    client, _ = api
    answer = check(client, AGENT, STAGING_DB, "rds:CreateDBSnapshot")  # group:agents gives no create in staging
    assert (answer["principal"], answer["decision"], answer["rule"]) == ("agent", "deny", "grants.group:agents.staging")


def test_a_reader_token_claiming_a_trusted_principal_gets_no_wider_grant(api: tuple[httpx.Client, Store]) -> None:
    """The attack: ci-deployer (production: read) sends X-Envlabel-Principal: admin-bot (full grants everywhere)."""
    client, store = api
    for contents in (False, True):  # the fast path and the worker-thread path
        answer = check(client, DEPLOYER, PROD_DB, "rds:ModifyDBInstance", contents=contents,
                       headers={"X-Envlabel-Principal": "admin-bot"})
        assert answer["principal"] == "ci-deployer" and answer["claimed_principal"] == "admin-bot"
        assert answer["decision"] == "deny", answer["reasons"]
        assert answer["rule"] == "grants.ci-deployer.production"
    staging = check(client, DEPLOYER, STAGING_DB, "rds:DeleteDBInstance", headers={"X-Envlabel-Principal": "admin-bot"})
    assert staging["decision"] == "deny"  # the claim's full grant does not lift the token's
    assert still_there(store, PROD_DB) and still_there(store, STAGING_DB)


def test_a_claim_narrows_an_admin_token(api: tuple[httpx.Client, Store]) -> None:
    client, _ = api
    plain = check(client, OPS, SANDBOX_DB, "rds:DeleteDBInstance")
    assert (plain["principal"], plain["decision"]) == ("alice", "allow")  # no grant of its own: the policy alone
    narrowed = check(client, OPS, STAGING_DB, "rds:DeleteDBInstance", headers={"X-Envlabel-Principal": "ci-deployer"})
    assert (narrowed["principal"], narrowed["claimed_principal"]) == ("alice", "ci-deployer")
    assert (narrowed["decision"], narrowed["rule"]) == ("deny", "grants.ci-deployer.staging")


def test_the_audit_header_reports_the_true_decision_in_audit_mode(api: tuple[httpx.Client, Store]) -> None:
    client, store = api
    answer = check(client, DEPLOYER, PROD_DB, "rds:DeleteDBInstance", headers={"X-Envlabel-Mode": "audit"})
    assert (answer["mode"], answer["decision"]) == ("audit", "deny")  # what would have happened
    staging = check(client, OPS, STAGING_DB, "rds:DeleteDBInstance", headers={"X-Envlabel-Mode": "AUDIT"})
    assert (staging["mode"], staging["decision"]) == ("audit", "require_approval")
    assert "approval" not in staging  # no approval request in audit mode
    assert still_there(store, PROD_DB)


def test_a_bad_mode_header_is_refused_naming_the_allowed_values(api: tuple[httpx.Client, Store]) -> None:
    client, _ = api
    response = client.post("/v1/check", json={"target": PROD_DB, "action": "rds:DeleteDBInstance"},
                           headers=bearer(DEPLOYER, **{"X-Envlabel-Mode": "yolo"}))
    assert response.status_code == 400
    assert "enforce, audit" in response.json()["message"] and "ENVLABEL_MODE" in response.json()["message"]


def test_check_command_decides_each_operation_for_the_token_principal(api: tuple[httpx.Client, Store]) -> None:
    client, store = api
    command = "aws rds delete-db-instance --db-instance-identifier orders --region us-east-1"
    response = client.post("/v1/check-command", json={"command": command, "environ": {"AWS_REGION": "us-east-1"}},
                           headers=bearer(DEPLOYER, **{"X-Envlabel-Principal": "admin-bot"}))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"] != "allow"
    assert all(op["principal"] == "ci-deployer" and op["claimed_principal"] == "admin-bot"
               for op in body["operations"])
    assert still_there(store, PROD_DB)


def test_without_tokens_the_claim_is_the_principal(tmp_path: Path) -> None:
    with served(tmp_path, tokens=False) as (url, _), httpx.Client(base_url=url) as client:
        claimed = check(client, None, STAGING_DB, "rds:DeleteDBInstance",
                        headers={"X-Envlabel-Principal": "ci-deployer"})
        assert (claimed["principal"], claimed["decision"]) == ("ci-deployer", "deny")
        assert "claimed_principal" not in claimed
        nobody = check(client, None, SANDBOX_DB, "rds:DescribeDBInstances")
        assert nobody["principal"] == "anonymous"
