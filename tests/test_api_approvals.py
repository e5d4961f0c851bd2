"""Approvals over the real HTTP API, attacks first: a requester cannot approve its own request, a reader token
cannot approve, a token cannot sign for someone else; an approval by another admin allows the same call once.
After every refused path the target is still in the store and the call is still refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from envlabel.store.sql import Store
from tests.api_callers import AGENT, DEPLOYER, LEAD, OPS, bearer, check, served, still_there
from tests.api_estate import PROD_DB, STAGING_DB

DELETE = "rds:DeleteDBInstance"
PARAMS = {"DBInstanceIdentifier": "orders", "SkipFinalSnapshot": True}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[httpx.Client, Store]]:
    with served(tmp_path) as (url, store), httpx.Client(base_url=url) as client:
        yield client, store


def pending(client: httpx.Client, token: str, target: str = STAGING_DB) -> str:
    """The id of the approval request a require_approval check carries."""
    answer = check(client, token, target, DELETE, parameters=PARAMS)
    assert answer["decision"] == "require_approval" and answer["approval"]["status"] == "pending", answer
    approval_id: str = answer["approval"]["id"]
    return approval_id


def decide(client: httpx.Client, token: str, approval_id: str, verb: str = "approve", **body: Any) -> httpx.Response:
    return client.post(f"/v1/approvals/{approval_id}/{verb}", json=body, headers=bearer(token))


def still_refused(client: httpx.Client, store: Store, token: str) -> None:
    assert check(client, token, STAGING_DB, DELETE, parameters=PARAMS)["decision"] == "require_approval"
    assert still_there(store, STAGING_DB) and still_there(store, PROD_DB)


def test_a_requester_cannot_approve_its_own_request(api: tuple[httpx.Client, Store]) -> None:
    client, store = api
    approval_id = pending(client, OPS)  # an admin asks
    refused = decide(client, OPS, approval_id, reason="looks fine to me")
    assert refused.status_code == 403, refused.text
    assert "own request" in refused.json()["message"]
    # nor by naming someone else as the decider
    signed = decide(client, OPS, approval_id, by="bob")
    assert signed.status_code == 403 and "token's principal" in signed.json()["message"]
    assert client.get(f"/v1/approvals/{approval_id}", headers=bearer(OPS)).json()["status"] == "pending"
    still_refused(client, store, OPS)


def test_a_reader_token_cannot_approve(api: tuple[httpx.Client, Store]) -> None:
    client, store = api
    approval_id = pending(client, AGENT)
    for token in (AGENT, DEPLOYER):
        refused = decide(client, token, approval_id)
        assert refused.status_code == 403 and "needs an admin token" in refused.json()["message"]
    still_refused(client, store, AGENT)


def test_an_approval_by_another_admin_allows_the_same_call_once(api: tuple[httpx.Client, Store]) -> None:
    client, store = api
    approval_id = pending(client, AGENT)
    assert pending(client, AGENT) == approval_id  # asking again reuses the request
    approved = decide(client, LEAD, approval_id, reason="staging reset, ticket 42")
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["decided_by"]) == ("approved", "bob")
    other = check(client, AGENT, STAGING_DB, DELETE, parameters={**PARAMS, "SkipFinalSnapshot": False})
    assert other["decision"] == "require_approval"  # other parameters: not the approved call
    assert other["approval"]["id"] != approval_id
    once = check(client, AGENT, STAGING_DB, DELETE, parameters=PARAMS)
    assert (once["decision"], once["rule"]) == ("allow", f"approval:{approval_id}")
    assert once["approval"]["status"] == "spent"
    again = check(client, AGENT, STAGING_DB, DELETE, parameters=PARAMS)
    assert again["decision"] == "require_approval" and again["approval"]["id"] != approval_id
    assert still_there(store, PROD_DB)


def test_another_principal_cannot_use_an_approval(api: tuple[httpx.Client, Store]) -> None:
    client, store = api
    approval_id = pending(client, AGENT)
    assert decide(client, LEAD, approval_id, reason="ok").status_code == 200
    # the same call by another token, even claiming the requester, is not the approved one
    other = check(client, OPS, STAGING_DB, DELETE, parameters=PARAMS, headers={"X-Envlabel-Principal": "agent"})
    assert other["decision"] == "require_approval" and other["approval"]["id"] != approval_id
    assert check(client, AGENT, STAGING_DB, DELETE, parameters=PARAMS)["decision"] == "allow"
    assert still_there(store, STAGING_DB)


def test_agents_sharing_a_token_do_not_share_approvals(api: tuple[httpx.Client, Store]) -> None:
    """Two agents behind one token, told apart by ENVLABEL_PRINCIPAL: one's approval is never the other's."""
    client, store = api
    seven = {"X-Envlabel-Principal": "agent-7"}
    answer = check(client, AGENT, STAGING_DB, DELETE, parameters=PARAMS, headers=seven)
    approval_id = answer["approval"]["id"]
    assert decide(client, LEAD, approval_id, reason="agent-7 may reset staging").status_code == 200
    for other in ({"X-Envlabel-Principal": "agent-9"}, {}):  # another claim, or none, on the same token
        refused = check(client, AGENT, STAGING_DB, DELETE, parameters=PARAMS, headers=other)
        assert refused["decision"] == "require_approval", refused["rule"]
        assert refused["approval"]["id"] != approval_id
    allowed = check(client, AGENT, STAGING_DB, DELETE, parameters=PARAMS, headers=seven)
    assert (allowed["decision"], allowed["rule"]) == ("allow", f"approval:{approval_id}")
    assert still_there(store, STAGING_DB)


def test_a_denied_request_leaves_the_call_refused(api: tuple[httpx.Client, Store]) -> None:
    client, store = api
    approval_id = pending(client, AGENT)
    no_reason = decide(client, LEAD, approval_id, verb="deny")
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["message"]
    denied = decide(client, LEAD, approval_id, verb="deny", reason="that is the shared staging db")
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    late = decide(client, OPS, approval_id, reason="too late")
    assert late.status_code == 409 and "denied by bob" in late.json()["message"]
    still_refused(client, store, AGENT)


def test_a_production_deny_cannot_be_asked_for(api: tuple[httpx.Client, Store]) -> None:
    client, store = api
    response = client.post("/v1/approvals", json={"target": PROD_DB, "action": DELETE, "reason": "please"},
                           headers=bearer(AGENT))
    assert response.status_code == 409 and "deny cannot be approved" in response.json()["message"]
    assert check(client, AGENT, PROD_DB, DELETE)["decision"] == "deny"
    assert still_there(store, PROD_DB)


def test_approvals_are_read_by_an_admin_or_their_requester(api: tuple[httpx.Client, Store]) -> None:
    client, _ = api
    asked = client.post("/v1/approvals", json={"target": STAGING_DB, "action": DELETE, "parameters": PARAMS,
                                               "reason": "reset staging"}, headers=bearer(AGENT))
    assert asked.status_code == 200, asked.text
    approval_id = asked.json()["id"]
    assert asked.json()["principal"] == "agent"
    assert check(client, AGENT, STAGING_DB, DELETE, parameters=PARAMS)["approval"]["id"] == approval_id
    mine = client.get("/v1/approvals", headers=bearer(AGENT)).json()["approvals"]
    assert [a["id"] for a in mine] == [approval_id]
    assert client.get("/v1/approvals", headers=bearer(DEPLOYER)).json()["approvals"] == []
    assert [a["id"] for a in client.get("/v1/approvals", params={"status": "pending"},
                                        headers=bearer(OPS)).json()["approvals"]] == [approval_id]
    assert client.get(f"/v1/approvals/{approval_id}", headers=bearer(AGENT)).status_code == 200
    other = client.get(f"/v1/approvals/{approval_id}", headers=bearer(DEPLOYER))
    assert other.status_code == 403 and "admin token" in other.json()["message"]
    assert client.get("/v1/approvals/apr-000000000000", headers=bearer(OPS)).status_code == 404


def test_without_tokens_the_decider_must_be_named(tmp_path: Path) -> None:
    with served(tmp_path, tokens=False) as (url, store), httpx.Client(base_url=url) as client:
        answer = check(client, None, STAGING_DB, DELETE, headers={"X-Envlabel-Principal": "dev-agent"})
        approval_id = answer["approval"]["id"]
        unnamed = client.post(f"/v1/approvals/{approval_id}/approve", json={})
        assert unnamed.status_code == 400 and "by" in unnamed.json()["message"]
        itself = client.post(f"/v1/approvals/{approval_id}/approve", json={"by": "dev-agent"})
        assert itself.status_code == 403
        assert check(client, None, STAGING_DB, DELETE,
                     headers={"X-Envlabel-Principal": "dev-agent"})["decision"] == "require_approval"
        assert client.post(f"/v1/approvals/{approval_id}/approve", json={"by": "carol"}).status_code == 200
        assert check(client, None, STAGING_DB, DELETE,
                     headers={"X-Envlabel-Principal": "dev-agent"})["decision"] == "allow"
        assert still_there(store, PROD_DB)


@pytest.mark.parametrize(("verb", "reason", "message"), [
    ("deny", "\u200b", "has no visible characters"), ("deny", "\u3000\u2060", "has no visible characters"),
    ("deny", "no\x1b[2Kyes", "control character U+001B"), ("approve", "\x07", "control character U+0007"),
])
def test_a_decision_reason_must_be_visible_plain_text(api: tuple[httpx.Client, Store], verb: str, reason: str,
                                                      message: str) -> None:
    """A deny "explained" by a zero-width space tells the requester nothing; an escape would rewrite a listing."""
    client, store = api
    approval_id = pending(client, AGENT)
    refused = decide(client, LEAD, approval_id, verb, reason=reason)
    assert refused.status_code == 422, refused.text
    assert message in refused.json()["message"], refused.json()
    assert client.get(f"/v1/approvals/{approval_id}", headers=bearer(LEAD)).json()["status"] == "pending"
    still_refused(client, store, AGENT)
