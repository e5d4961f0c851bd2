"""The incident, with a human in the loop: an agent asks to delete ``orders-db`` and a person decides on the page.

The twins of tests/test_incident.py (``orders-db`` in the Production, Staging and Sandbox OUs of a moto
Organization, told apart only by the OU), scanned by the real scanner and served by the real API. This time
production deletes are configured ``require_approval`` so a request exists: the agent, handed the production ARN,
asks; the approver's notification (a real webhook receiver) and the page (real Chromium) say PRODUCTION and show
the staging twin; the approver denies it and the database is still there. Handed the staging ARN, the agent asks
again; it is approved on the page and the delete goes through once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envlabel.client import Client
from envlabel.config import config_from_dict
from envlabel.errors import ApprovalRequired
from envlabel.service.core.pipeline import run_source
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from tests.aws_estate import ROLE
from tests.browser import Receiver, decide, webhooks
from tests.test_incident import REGION, Twins, build_twins

pytest_plugins = ["tests.browser_fixtures"]  # the browser and receiver fixtures
DELETE = "rds:DeleteDBInstance"


@pytest.fixture
def twins(moto: str, tmp_path: Path, receiver: Receiver) -> Iterator[Twins]:
    accounts = build_twins(moto)
    config = config_from_dict({
        "store": f"sqlite:///{tmp_path / 'envlabel.db'}",
        "policy": {"production": {"read": "allow", "create": "require_approval", "modify": "require_approval",
                                  "delete": "require_approval"}},
        "approvers": {"production": ["dba-lead"], "staging": ["orders-oncall"]},
        "webhooks": [{"url": receiver.url, "events": ["approval_requested"]}],
        "sources": [{"name": "aws", "type": "aws", "endpoint_url": moto, "regions": [REGION],
                     "organization": True, "assume_role": ROLE}],
    })
    store = open_store(config.store)
    summary = run_source(config, store, config.sources[0])
    assert summary.complete, summary.errors
    # loopback, no tokens: the approver types a name
    with webhooks(config) as notify, BackgroundServer(config, store, notify=notify) as server:
        yield Twins(moto, server.url, accounts)


def ask_to_delete(twins: Twins, ou: str, envlabel: Client, identifier: str) -> str:
    """The agent, holding ``ou``'s credentials, deletes ``identifier``; envlabel stops it for a person, checking
    ``ou``'s ``orders-db`` ARN. The request id."""
    with pytest.raises(ApprovalRequired) as asked:
        twins.agent(ou, envlabel).delete_db_instance(DBInstanceIdentifier=identifier, SkipFinalSnapshot=True)
    check = asked.value.check
    assert (check["target"], check["action"]) == (twins.arn(ou), DELETE)
    assert asked.value.approval_id
    return asked.value.approval_id


def open_request(browser: Any, twins: Twins, approval_id: str) -> Any:
    page = browser.new_context().new_page()
    page.goto(f"{twins.envlabel}/approvals")
    page.locator(f"a[href='/approvals/{approval_id}']").click()
    return page


def test_the_production_delete_is_denied_on_the_page_and_the_staging_one_goes_through_once(
        twins: Twins, receiver: Receiver, browser: Any) -> None:
    envlabel = Client(twins.envlabel, principal="orders-agent")
    production, staging = twins.arn("Production"), twins.arn("Staging")

    # Handed the production ARN, the agent asks to delete it: a person must decide.
    approval_id = ask_to_delete(twins, "Production", envlabel, production)

    # What reaches the approver says PRODUCTION and names the staging twin.
    message = json.dumps(receiver.approval_requested(approval_id))
    assert "PRODUCTION" in message and production in message
    assert staging in message, "the notification does not show the staging twin"

    page = open_request(browser, twins, approval_id)
    assert page.locator(".env").first.inner_text() == "PRODUCTION"
    assert page.locator("code.target").inner_text() == production
    assert "NO: this cannot be undone" in page.locator("tr", has_text="Reversible").inner_text()
    twins_shown = page.locator(".lookalikes").inner_text()
    assert staging in twins_shown and "staging" in twins_shown.lower()
    assert "/Root/Production" in page.locator("table", has_text="Signal").inner_text()
    decide(page, "deny", "this is the production database: the ticket says staging", name="dana")
    assert page.locator(".status").inner_text() == "denied"
    page.context.close()

    assert "orders-db" in twins.databases("Production")
    ask_to_delete(twins, "Production", envlabel, production)  # asking again opens a new request; nothing is deleted
    assert "orders-db" in twins.databases("Production")

    # Handed the staging database (its ARN is the target checked), the agent asks again; approved on the page, the
    # same call goes through once. (moto takes no ARN as an identifier: the agent names it in the staging account.)
    staging_id = ask_to_delete(twins, "Staging", envlabel, "orders-db")
    page = open_request(browser, twins, staging_id)
    assert page.locator(".env").first.inner_text() == "STAGING"
    assert production in page.locator(".lookalikes").inner_text()  # the production twin, prominently
    decide(page, "approve", "staging clean-up, ticket ORD-1183", name="dana")
    assert page.locator(".status").inner_text() == "approved"
    page.context.close()

    agent = twins.agent("Staging", envlabel)
    agent.delete_db_instance(DBInstanceIdentifier="orders-db", SkipFinalSnapshot=True)
    assert "orders-db" not in twins.databases("Staging")
    with pytest.raises(ApprovalRequired):  # spent: the same call again needs a new approval
        agent.delete_db_instance(DBInstanceIdentifier="orders-db", SkipFinalSnapshot=True)
    assert "orders-db" in twins.databases("Production")
