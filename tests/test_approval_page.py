"""The approval page in a real headless Chromium against the real server: what an approver sees (PRODUCTION in
large type, the evidence, the staging twin), signing in with an admin token, deciding with a reason, the one-time
link, and the attacks (a reader token, the requester approving itself, a form posted from another site)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from envlabel.client import Client
from envlabel.config import config_from_dict
from envlabel.errors import ApprovalRequired
from envlabel.guard.boto3 import protect
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from tests.api_estate import ADMIN_TOKEN, PROD_DB, READER_TOKEN, STAGING_DB, TOKENS, populate, sha
from tests.browser import LINK, Receiver, decide, sign_in, webhooks
from tests.estates import scan_of

pytest_plugins = ["tests.browser_fixtures"]  # the browser and receiver fixtures
MODIFY = "rds:ModifyDBInstance"  # require_approval in production by the default policy
#: a second admin: the approver of requests the admin token "ops" makes itself
OTHER_ADMIN_TOKEN = "second-admin-secret-token-for-tests"


@dataclass
class Served:
    url: str

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def ask(self, target: str = PROD_DB, token: str = READER_TOKEN, action: str = MODIFY) -> dict[str, Any]:
        """The agent's check, as the SDK sends it: require_approval creates (or reuses) the request."""
        with self.api(token) as api:
            answer: dict[str, Any] = api.post("/v1/check", json={"target": target, "action": action}).json()
        return answer

    def approval(self, approval_id: str) -> dict[str, Any]:
        with self.api(ADMIN_TOKEN) as api:
            response = api.get(f"/v1/approvals/{approval_id}")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body


def config(tmp_path: Path, **extra: Any) -> Any:
    tokens = [*TOKENS, {"name": "ops-2", "role": "admin", "sha256": sha(OTHER_ADMIN_TOKEN)}]
    return config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}",
                             "approvers": {"production": ["sre-oncall"], "staging": ["team-lead"]},
                             "api": {"tokens": tokens}, **extra})


@pytest.fixture
def served(tmp_path: Path, receiver: Receiver) -> Iterator[Served]:
    cfg = config(tmp_path, webhooks=[{"url": receiver.url, "events": ["approval_requested"]}],
                 approvals={"base_url": "https://envlabel.example.com"})  # links name it; the key is what counts
    store = open_store(cfg.store)
    populate(store)
    with webhooks(cfg) as notify, BackgroundServer(cfg, store, notify=notify) as server:
        yield Served(server.url)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


def test_an_admin_sees_production_the_evidence_and_the_twin_and_approves_once(served: Served, page: Any) -> None:
    asked = served.ask()
    assert asked["decision"] == "require_approval", asked
    approval_id = asked["approval"]["id"]

    page.goto(f"{served.url}/approvals")
    assert "/approvals/login" in page.url  # nothing is shown before signing in
    sign_in(page, served.url, ADMIN_TOKEN)
    row = page.locator("tr", has_text=PROD_DB)
    assert row.locator(".env").inner_text() == "PRODUCTION"
    row.locator("a").click()

    assert re.search(rf"/approvals/{approval_id}$", page.url)
    banner = page.locator(".env").first
    assert banner.inner_text() == "PRODUCTION"
    assert float(banner.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")) >= 40  # large type
    assert page.locator("code.target").inner_text() == PROD_DB
    assert "/Root/Production" in page.locator("table", has_text="Signal").inner_text()  # the evidence chain
    twins = page.locator(".lookalikes").inner_text()
    assert STAGING_DB in twins and "staging" in twins.lower()  # the twin it may be mistaken for
    assert "agent" in page.locator("tr", has_text="Principal").inner_text()
    assert "Approving as ops" in page.locator("form", has_text="Reason").inner_text()

    decide(page, "approve", "resize agreed in CHG-42")
    assert page.locator(".status").inner_text() == "approved"
    assert "ops" in page.locator("tr", has_text="Status").inner_text()

    spent = served.ask()  # the agent's retry: allowed once, by this approval
    assert (spent["decision"], spent["rule"]) == ("allow", f"approval:{approval_id}")
    again = served.ask()  # spent: the next identical call needs a new approval
    assert again["decision"] == "require_approval"
    assert again["approval"]["id"] != approval_id


def test_a_reader_token_cannot_sign_in(served: Served, page: Any) -> None:
    approval_id = served.ask()["approval"]["id"]
    sign_in(page, served.url, READER_TOKEN)
    assert "needs an admin token" in page.content()
    page.goto(f"{served.url}/approvals/{approval_id}")
    assert "/approvals/login" in page.url  # still not signed in
    assert page.locator("button[value=approve]").count() == 0
    assert served.approval(approval_id)["status"] == "pending"


def test_the_requester_cannot_approve_its_own_request(served: Served, page: Any) -> None:
    asked = served.ask(token=ADMIN_TOKEN)  # the admin "ops" asks for itself
    approval_id = asked["approval"]["id"]
    sign_in(page, served.url, ADMIN_TOKEN)
    page.goto(f"{served.url}/approvals/{approval_id}")
    decide(page, "approve", "I would like to")
    assert "ops" in page.locator(".problem").inner_text()  # refused, saying why
    assert served.approval(approval_id)["status"] == "pending"
    assert served.ask(token=ADMIN_TOKEN)["decision"] == "require_approval"

    other = page.context.browser.new_context().new_page()  # another admin may
    sign_in(other, served.url, OTHER_ADMIN_TOKEN)
    other.goto(f"{served.url}/approvals/{approval_id}")
    decide(other, "approve", "four eyes")
    assert other.locator(".status").inner_text() == "approved"
    other.context.close()


@contextmanager
def signed_in_client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        client.post("/approvals/login", data={"token": ADMIN_TOKEN})
        assert client.cookies.get("envlabel_approver"), "signing in set no cookie"
        yield client


def test_a_decision_posted_from_another_site_is_refused(served: Served) -> None:
    approval_id = served.ask()["approval"]["id"]
    with signed_in_client(served) as client:
        html = client.get(f"/approvals/{approval_id}").text
        csrf = re.search(r"name=csrf value='([0-9a-f]+)'", html)
        assert csrf, html
        form = {"decision": "approve", "reason": "click here", "csrf": csrf.group(1)}
        foreign = client.post(f"/approvals/{approval_id}", data=form, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403
        forged = client.post(f"/approvals/{approval_id}", data={**form, "csrf": "0" * 64})
        assert forged.status_code == 400 and "CSRF" in forged.text
        elsewhere = client.post("/approvals/login", params={"next": "//evil.example/approvals"},
                                data={"token": ADMIN_TOKEN})
        assert elsewhere.headers["location"] == "/approvals"  # signing in never sends the approver elsewhere
        assert served.approval(approval_id)["status"] == "pending"
        assert served.ask()["decision"] == "require_approval"  # nothing was approved


def test_the_page_without_a_session_shows_nothing(served: Served) -> None:
    approval_id = served.ask()["approval"]["id"]
    with httpx.Client(base_url=served.url, timeout=30) as anonymous:
        listed = anonymous.get("/approvals")
        assert listed.status_code == 303 and "/approvals/login" in listed.headers["location"]
        posted = anonymous.post(f"/approvals/{approval_id}", data={"decision": "approve", "reason": "x"})
        assert posted.status_code == 303
        wrong = anonymous.get(f"/approvals/{approval_id}", params={"key": "not-the-key"})
        assert wrong.status_code == 403
    assert served.approval(approval_id)["status"] == "pending"


def test_a_one_time_link_decides_its_request_once(served: Served, receiver: Receiver, page: Any) -> None:
    approval_id = served.ask()["approval"]["id"]
    message = receiver.approval_requested(approval_id)
    found = LINK.search(str(message))
    assert found and found.group(1) == approval_id, message
    key = found.group(2)

    page.goto(f"{served.url}/approvals/{approval_id}?key={key}")  # no sign-in
    assert page.locator(".env").first.inner_text() == "PRODUCTION"
    decide(page, "deny", "not during the freeze", name="dana")
    assert page.locator(".status").inner_text() == "denied"
    assert served.approval(approval_id)["decided_by"] == "link:dana"

    page.goto(f"{served.url}/approvals/{approval_id}?key={key}")  # used: the link opens nothing any more
    assert page.locator("button[value=approve]").count() == 0
    assert served.ask()["decision"] == "require_approval"


# -- a guarded boto3 call, approved on the page ----------------------------------------------------
ACCOUNT, REGION = "123456789012", "us-east-1"  # the account moto gives the plain test credentials
ORDERS = f"arn:aws:rds:{REGION}:{ACCOUNT}:db:orders-db"


@pytest.fixture
def moto_estate(moto: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """orders-db in moto, labeled production in the store; the server that guards it. (moto URL, envlabel URL)"""
    rds = boto3.client("rds", endpoint_url=moto, region_name=REGION)
    rds.create_db_instance(DBInstanceIdentifier="orders-db", DBInstanceClass="db.t3.micro", Engine="postgres",
                           MasterUsername="admin", MasterUserPassword="not-a-secret-1", AllocatedStorage=20)
    cfg = config(tmp_path)
    store = open_store(cfg.store)
    now = utcnow()
    commit_scan(store, Taxonomy(), scan_of([
        Resource(ACCOUNT, "aws", "aws:account", "test", None, {}, "org"),
        Resource(ORDERS, "aws", "rds:db", "orders-db", ACCOUNT, {"Environment": "production"}, f"{ACCOUNT}/{REGION}"),
    ]), now, now)
    with BackgroundServer(cfg, store) as server:
        yield moto, server.url


def test_a_guarded_boto3_call_approved_on_the_page_goes_through_once(moto_estate: tuple[str, str],
                                                                      page: Any) -> None:
    moto, url = moto_estate
    session = boto3.Session(region_name=REGION)
    protect(session, Client(url, token=READER_TOKEN))
    rds = session.client("rds", endpoint_url=moto)

    def resize() -> Any:
        return rds.modify_db_instance(DBInstanceIdentifier="orders-db", AllocatedStorage=50, ApplyImmediately=True)

    with pytest.raises(ApprovalRequired) as asked:
        resize()
    approval_id = asked.value.approval_id
    assert approval_id

    sign_in(page, url, ADMIN_TOKEN)
    page.goto(f"{url}/approvals/{approval_id}")
    assert page.locator(".env").first.inner_text() == "PRODUCTION"
    assert page.locator("code.target").inner_text() == ORDERS
    decide(page, "approve", "storage resize, CHG-7")
    assert page.locator(".status").inner_text() == "approved"

    assert resize()["DBInstance"]["DBInstanceIdentifier"] == "orders-db"  # the retried call goes through once
    with pytest.raises(ApprovalRequired) as again:
        resize()
    assert again.value.approval_id and again.value.approval_id != approval_id


def test_a_tokenless_server_refuses_decisions_from_another_site(tmp_path: Path) -> None:
    """Without tokens the page is open on loopback, as the API is: a web page elsewhere (DNS rebinding, or a
    cross-origin form) still cannot decide a request."""
    cfg = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}"})
    store = open_store(cfg.store)
    populate(store)
    with BackgroundServer(cfg, store) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        asked = client.post("/v1/check", json={"target": PROD_DB, "action": MODIFY},
                            headers={"X-Envlabel-Principal": "agent"}).json()
        approval_id = asked["approval"]["id"]
        html = client.get(f"/approvals/{approval_id}")
        assert html.status_code == 200 and "PRODUCTION" in html.text
        csrf = re.search(r"name=csrf value='([0-9a-f]+)'", html.text)
        assert csrf
        form = {"decision": "approve", "reason": "go <script>alert(1)</script>", "name": "<b>mallory</b>",
                "csrf": csrf.group(1)}
        rebound = client.post(f"/approvals/{approval_id}", data=form, headers={"Host": "evil.example"})
        assert rebound.status_code == 421
        foreign = client.post(f"/approvals/{approval_id}", data=form, headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403
        again = client.post("/v1/check", json={"target": PROD_DB, "action": MODIFY},
                            headers={"X-Envlabel-Principal": "agent"}).json()
        assert again["decision"] == "require_approval"  # nothing was approved
        ok = client.post(f"/approvals/{approval_id}", data=form)  # the page's own form, from this machine
        assert ok.status_code == 303
        assert client.get(f"/v1/approvals/{approval_id}").json()["decided_by"] == "<b>mallory</b>"
        shown = client.get(ok.headers["location"]).text  # what a person typed is shown, never run
        assert "<script>" not in shown and "<b>mallory" not in shown
        assert "&lt;script&gt;" in shown and "&lt;b&gt;mallory" in shown


def test_over_https_the_session_cookie_is_secure(tmp_path: Path) -> None:
    import ssl

    from envlabel.service.daemon.server import Tls
    from tests.tls_files import make_tls

    files = make_tls(tmp_path)
    cfg = config(tmp_path)
    store = open_store(cfg.store)
    populate(store)
    with BackgroundServer(cfg, store, tls=Tls(str(files.cert), str(files.key))) as server, \
            httpx.Client(base_url=server.url, verify=ssl.create_default_context(cafile=str(files.ca)),
                         timeout=30) as client:
        signed_in = client.post("/approvals/login", data={"token": ADMIN_TOKEN})
        cookie = signed_in.headers["set-cookie"].lower()
        assert signed_in.status_code == 303
        assert all(part in cookie for part in ("httponly", "samesite=strict", "secure", "path=/approvals")), cookie
        assert client.get("/approvals").status_code == 200
