"""``GET /v1/decisions`` over the real HTTP API: every check recorded, an admin reads all, a reader token only its
own principal's (another's is a 403), and the would-block report of audit mode."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api_callers import AGENT, DEPLOYER, OPS, bearer, check, eventually, served
from tests.api_estate import PROD_DB, SANDBOX_DB, STAGING_DB


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with served(tmp_path_factory.mktemp("decisions")) as (url, _store), httpx.Client(base_url=url) as client:
        check(client, DEPLOYER, SANDBOX_DB, "rds:DeleteDBInstance")
        check(client, DEPLOYER, PROD_DB, "rds:ModifyDBInstance", headers={"X-Envlabel-Principal": "admin-bot"})
        check(client, AGENT, STAGING_DB, "rds:DescribeDBInstances", headers={"X-Envlabel-Interface": "guard"})
        check(client, AGENT, PROD_DB, "rds:DeleteDBInstance", headers={"X-Envlabel-Mode": "audit"})
        check(client, OPS, SANDBOX_DB, "rds:DescribeDBInstances")
        eventually(lambda: len(decisions(client, OPS)["decisions"]) >= 5)  # the batched writer has written them
        yield client


def decisions(client: httpx.Client, token: str, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/decisions", params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_admin_reads_every_principals_decisions(api: httpx.Client) -> None:
    entries = decisions(api, OPS)["decisions"]
    assert {e["principal"] for e in entries} == {"ci-deployer", "agent", "alice"}
    claimed = next(e for e in entries if e["claimed_principal"] == "admin-bot")
    assert (claimed["principal"], claimed["decision"], claimed["rule"]) == ("ci-deployer", "deny",
                                                                            "grants.ci-deployer.production")
    assert claimed["interface"] == "http" and claimed["environment"] == "production"
    guarded = next(e for e in entries if e["action"] == "rds:DescribeDBInstances" and e["principal"] == "agent")
    assert guarded["interface"] == "guard"
    only = decisions(api, OPS, principal="ci-deployer", decision="deny")["decisions"]
    assert [e["target"] for e in only] == [PROD_DB]


def test_a_reader_token_reads_only_its_own_principals_decisions(api: httpx.Client) -> None:
    own = decisions(api, DEPLOYER)["decisions"]
    assert own and {e["principal"] for e in own} == {"ci-deployer"}
    assert decisions(api, DEPLOYER, principal="ci-deployer")["decisions"] == own
    # a claim does not change whose decisions a token reads
    response = api.get("/v1/decisions", headers=bearer(DEPLOYER, **{"X-Envlabel-Principal": "alice"}))
    assert {e["principal"] for e in response.json()["decisions"]} == {"ci-deployer"}


def test_a_reader_token_asking_for_another_principals_decisions_is_refused(api: httpx.Client) -> None:
    response = api.get("/v1/decisions", params={"principal": "alice"}, headers=bearer(DEPLOYER))
    assert response.status_code == 403
    assert "its own principal's decisions" in response.json()["message"] and "admin token" in response.json()["message"]


def test_the_decision_log_pages_with_a_cursor(api: httpx.Client) -> None:
    first = decisions(api, OPS, limit=2)
    assert len(first["decisions"]) == 2 and first["next_cursor"]
    rest = decisions(api, OPS, limit=100, cursor=first["next_cursor"])["decisions"]
    ids = [e["id"] for e in first["decisions"] + rest]
    assert len(ids) == len(set(ids)) >= 5


def test_the_would_block_report_counts_audit_mode_refusals(api: httpx.Client) -> None:
    audited = decisions(api, OPS, would_block="true")["decisions"]
    assert [(e["principal"], e["target"], e["mode"]) for e in audited] == [("agent", PROD_DB, "audit")]
    report = api.get("/v1/decisions/would-block", headers=bearer(OPS)).json()
    assert report["total"] == 1 and report["by"][0]["principal"] == "agent"
    mine = api.get("/v1/decisions/would-block", headers=bearer(DEPLOYER)).json()
    assert mine["total"] == 0 and mine["by"] == []  # a reader sees its own rows only


def test_a_bad_filter_is_a_422_saying_what_to_pass(api: httpx.Client) -> None:
    response = api.get("/v1/decisions", params={"decision": "maybe"}, headers=bearer(OPS))
    assert response.status_code == 422, response.text
    assert "decision" in response.json()["message"]


@pytest.mark.parametrize("since", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/decisions/would-block"])
def test_a_time_with_no_utc_moment_is_a_422_not_a_500(api: httpx.Client, path: str, since: str) -> None:
    """Written correctly, but year 9999 west of UTC (or year 1 east of it) has no UTC moment: the store's times."""
    response = api.get(path, params={"since": since}, headers=bearer(OPS))
    assert response.status_code == 422, response.text
    assert "years 1 to 9999" in response.json()["message"] and "since" in response.json()["message"]
    assert len(decisions(api, OPS)["decisions"]) >= 5  # and the log still answers
