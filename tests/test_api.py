"""The HTTP API on a real uvicorn server (loopback, free port) over a real SQLite store, driven by httpx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from envlabel.errors import EnvlabelError
from envlabel.service.cli import main
from envlabel.service.daemon.server import BackgroundServer, build_app
from envlabel.service.http.tokens import Tokens, is_loopback
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.api_estate import (
    ADMIN_TOKEN,
    EKS_ALIAS,
    GONE_DB,
    NEVER_SEEN,
    PROD_DB,
    PROD_POD,
    READER_TOKEN,
    SANDBOX_DB,
    STAGING_DB,
    STALE_DB,
    TOKENS,
    UNLABELED,
    make_config,
    populate,
    sha,
)

MAX_BATCH, MAX_BODY = 50, 8192


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    path = tmp_path_factory.mktemp("api") / "envlabel.db"
    store = open_store(f"sqlite:///{path}")
    populate(store)
    return store


@pytest.fixture(scope="module")
def api(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The API on loopback with no tokens: every caller may do everything."""
    config = make_config(str(tmp_path_factory.mktemp("unused") / "x.db"), max_batch=MAX_BATCH,
                         max_body_bytes=MAX_BODY)
    with BackgroundServer(config, store) as server, httpx.Client(base_url=server.url) as client:
        yield client


@pytest.fixture(scope="module")
def secured(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API with reader and admin tokens configured (required even on loopback)."""
    config = make_config(str(tmp_path_factory.mktemp("unused") / "x.db"), tokens=TOKENS)
    with BackgroundServer(config, store) as server:
        yield server.url


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= {"error", "message"}, body
    return body


# -- labels --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("target", "environment"), [
    (PROD_DB, "production"), (STAGING_DB, "staging"), (SANDBOX_DB, "sandbox"), (PROD_POD, "production"),
    ("k8s://prod-eu/payments/deploy/api", "production"), ("222222222222", "production"),
    ("arn:aws:organizations::111111111111:account/o-test/333333333333", "staging"),
])
def test_label(api: httpx.Client, target: str, environment: str) -> None:
    body = api.get("/v1/label", params={"target": target}).json()
    assert (body["target"], body["found"], body["environment"]) == (target, True, environment)
    assert body["authoritative"] and body["evidence"], body


def test_fast_label_read_agrees_with_the_full_read(store: Store) -> None:
    from envlabel.config import config_from_dict
    from envlabel.service.core.clock import utcnow
    from envlabel.service.core.query import Query

    query, now = Query(config_from_dict({}), store), utcnow()
    targets = [s.resource.id for s in store.list_labels(include_gone=True)] + [EKS_ALIAS, NEVER_SEEN]
    assert STALE_DB in targets and GONE_DB in targets
    for target in targets:
        full = query.answer(target, query.label(target)["provider"], store.get(target), now)
        fast = query.label(target, now)
        assert isinstance(fast.pop("lookalikes"), list), target  # read beside the label (tests/test_lookalikes.py)
        assert fast == full, target


def test_label_twins_differ_only_by_evidence(api: httpx.Client) -> None:
    prod, staging = (api.get("/v1/label", params={"target": t}).json() for t in (PROD_DB, STAGING_DB))
    assert (prod["kind"], prod["name"]) == (staging["kind"], staging["name"]) == ("rds:db", "orders")
    assert prod["evidence"][0]["detail"].endswith("/Root/Production")
    assert staging["evidence"][0]["detail"].endswith("/Root/Staging")


@pytest.mark.parametrize(("target", "found", "stale"), [(NEVER_SEEN, False, False), (GONE_DB, False, False),
                                                         (UNLABELED, True, False), (STALE_DB, True, True)])
def test_label_not_authoritative(api: httpx.Client, target: str, found: bool, stale: bool) -> None:
    response = api.get("/v1/label", params={"target": target})
    assert response.status_code == 200
    body = response.json()
    assert (body["found"], body["stale"], body["authoritative"]) == (found, stale, False)
    if target == GONE_DB:
        assert body["gone_at"]


@pytest.mark.parametrize("params", [{"target": "orders-db"}, {"target": "arn:aws:rds"}, {"target": ""}, {}])
def test_malformed_target_is_400_naming_the_forms(api: httpx.Client, params: dict[str, str]) -> None:
    body = error_of(api.get("/v1/label", params=params), 400)
    assert "accepted target forms" in body["message"] and "k8s://CLUSTER" in body["message"]


def test_batch_in_order(api: httpx.Client) -> None:
    targets = [STAGING_DB, PROD_DB, NEVER_SEEN, SANDBOX_DB]
    labels = api.post("/v1/labels", json={"targets": targets}).json()["labels"]
    assert [(lb["target"], lb["environment"]) for lb in labels] == [
        (STAGING_DB, "staging"), (PROD_DB, "production"), (NEVER_SEEN, "unknown"), (SANDBOX_DB, "sandbox")]


def test_batch_resolves_aliases_and_repeats(api: httpx.Client) -> None:
    targets = [EKS_ALIAS, PROD_DB, EKS_ALIAS, GONE_DB, "k8s://prod-eu"]
    labels = api.post("/v1/labels", json={"targets": targets}).json()["labels"]
    assert [lb["target"] for lb in labels] == targets
    assert [lb["environment"] for lb in labels] == ["production", "production", "production", "unknown",
                                                    "production"]
    assert labels[0]["id"] == "k8s://prod-eu" and labels[3]["gone_at"]
    single = api.get("/v1/label", params={"target": EKS_ALIAS}).json()
    assert single == labels[0]


def test_batch_limits(api: httpx.Client) -> None:
    too_many = api.post("/v1/labels", json={"targets": [PROD_DB] * (MAX_BATCH + 1)})
    assert "api.max_batch" in error_of(too_many, 413)["message"]
    assert api.post("/v1/labels", json={"targets": [PROD_DB] * MAX_BATCH}).status_code == 200
    bad = error_of(api.post("/v1/labels", json={"targets": [PROD_DB, "nope"]}), 400)
    assert bad["message"].startswith("targets.1: ") and "accepted target forms" in bad["message"]


def test_body_limit(api: httpx.Client) -> None:
    huge = {"targets": [PROD_DB + "x" * 100] * (MAX_BODY // 100)}
    assert "api.max_body_bytes" in error_of(api.post("/v1/labels", json=huge), 413)["message"]
    chunked = api.post("/v1/check", content=iter([b'{"target": "', b"x" * MAX_BODY, b'"}']),
                       headers={"content-type": "application/json"})
    error_of(chunked, 413)


@pytest.mark.parametrize(("body", "field"), [
    ({"targets": []}, "body.targets"), ({"targets": [PROD_DB], "extra": 1}, "body.extra"), ({}, "body.targets"),
])
def test_invalid_batch_body_is_422_with_field_paths(api: httpx.Client, body: dict[str, Any], field: str) -> None:
    error = error_of(api.post("/v1/labels", json=body), 422)
    assert field in [p["field"] for p in error["problems"]] and field in error["message"]


def test_not_json_is_422(api: httpx.Client) -> None:
    error_of(api.post("/v1/check", content=b"{not json", headers={"content-type": "application/json"}), 422)


# -- check ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("target", "action", "decision", "environment", "action_class"), [
    (PROD_DB, "rds:DeleteDBInstance", "deny", "production", "delete"),
    (PROD_DB, "rds:ModifyDBInstance", "require_approval", "production", "modify"),
    (PROD_DB, "rds:CreateDBSnapshot", "require_approval", "production", "create"),
    (PROD_DB, "rds:DescribeDBInstances", "allow", "production", "read"),
    (STAGING_DB, "rds:DeleteDBInstance", "require_approval", "staging", "delete"),
    (STAGING_DB, "rds:ModifyDBInstance", "allow", "staging", "modify"),
    (SANDBOX_DB, "rds:DeleteDBInstance", "allow", "sandbox", "delete"),
    (PROD_POD, "delete", "deny", "production", "delete"),
    (PROD_POD, "get", "allow", "production", "read"),
    (SANDBOX_DB, "Frobnicate", "allow", "sandbox", "delete"),
    (UNLABELED, "s3:PutObject", "require_approval", "production", "create"),
    (NEVER_SEEN, "rds:DeleteDBInstance", "deny", "production", "delete"),
    (GONE_DB, "rds:ModifyDBInstance", "require_approval", "production", "modify"),
    (STALE_DB, "rds:DeleteDBInstance", "deny", "production", "delete"),  # its stale label says sandbox
])
def test_check(api: httpx.Client, target: str, action: str, decision: str, environment: str,
               action_class: str) -> None:
    body = api.post("/v1/check", json={"target": target, "action": action}).json()
    assert (body["decision"], body["environment"], body["action_class"]) == (decision, environment, action_class)
    # reversible is the target's recovery: a ModifyDBInstance without its parameters could set
    # BackupRetentionPeriod=0 (not known to be reversible); a deployment's delete keeps its volumes; a database
    # with no facts scanned is not known to be recoverable
    assert body["reversible"] is (action_class in ("read", "create") or (target, action) == (PROD_POD, "delete"))
    assert body["reversible"] is (body["recovery"]["reversible"] is True)
    assert body["label"]["target"] == target and body["reasons"]
    expected = {"production": ["sre-oncall", "dba-lead"], "staging": ["team-lead"]}.get(environment, [])
    assert body["approvers"] == (expected if decision == "require_approval" else [])
    if target in (NEVER_SEEN, GONE_DB, STALE_DB, UNLABELED):
        assert any("decided as production (fail closed)" in r for r in body["reasons"]), body["reasons"]


@pytest.mark.parametrize(("body", "status"), [
    ({"target": PROD_DB}, 422), ({"target": PROD_DB, "action": ""}, 422),
    ({"target": PROD_DB, "action": "delete", "force": True}, 422), ({"target": "prod-db", "action": "delete"}, 400),
])
def test_check_bad_requests(api: httpx.Client, body: dict[str, Any], status: int) -> None:
    error_of(api.post("/v1/check", json=body), status)


# -- listing, history, findings ------------------------------------------------------------------
def test_resources_pagination(api: httpx.Client) -> None:
    everything = api.get("/v1/resources", params={"limit": 1000}).json()
    assert everything["next_cursor"] is None
    ids = [r["target"] for r in everything["resources"]]
    assert ids == sorted(ids) and PROD_DB in ids and GONE_DB not in ids
    paged: list[str] = []
    cursor = None
    while True:
        page = api.get("/v1/resources", params={"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["resources"]) <= 4
        paged += [r["target"] for r in page["resources"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == ids


def test_resources_filters(api: httpx.Client) -> None:
    staging = api.get("/v1/resources", params={"environment": "staging"}).json()["resources"]
    assert {r["environment"] for r in staging} == {"staging"} and STAGING_DB in [r["target"] for r in staging]
    k8s = api.get("/v1/resources", params={"provider": "kubernetes"}).json()["resources"]
    assert {r["provider"] for r in k8s} == {"kubernetes"} and len(k8s) == 3


@pytest.mark.parametrize(("params", "field"), [({"environment": "prod"}, "query.environment"),
                                               ({"provider": "azure"}, "query.provider"),
                                               ({"limit": 0}, "query.limit"), ({"cursor": "%%%"}, "query.cursor")])
def test_resources_bad_filters(api: httpx.Client, params: dict[str, Any], field: str) -> None:
    assert field in [p["field"] for p in error_of(api.get("/v1/resources", params=params), 422)["problems"]]


def test_history(api: httpx.Client) -> None:
    body = api.get("/v1/history", params={"target": GONE_DB}).json()
    assert [e["event"] for e in body["history"]] == ["label", "gone"]
    error_of(api.get("/v1/history", params={"target": "nope"}), 400)


def test_findings(api: httpx.Client) -> None:
    findings = api.get("/v1/findings").json()["findings"]
    assert any(f["target"] == "555555555555" and f["kind"] == "unlabeled" for f in findings), findings
    only = api.get("/v1/findings", params={"kind": "unlabeled"}).json()["findings"]
    assert only and {f["kind"] for f in only} == {"unlabeled"}
    error_of(api.get("/v1/findings", params={"severity": "apocalyptic"}), 422)


# -- operations, errors, OpenAPI -----------------------------------------------------------------
def test_health_ready_metrics(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").json()["status"] == "ready"
    api.get("/v1/label", params={"target": PROD_DB})
    metrics = api.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'envlabel_http_request_duration_seconds_count{method="GET",route="/v1/label",status="200"}' in metrics.text


def test_not_ready_without_data(tmp_path: Path) -> None:
    config = make_config(str(tmp_path / "empty.db"))
    with BackgroundServer(config, open_store(config.store)) as server:
        body = error_of(httpx.get(f"{server.url}/readyz"), 503)
        assert "envlabel scan" in body["message"]
        assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_store_failure_is_json_503_fail_closed(tmp_path: Path) -> None:
    import sqlite3

    config = make_config(str(tmp_path / "broken.db"))
    store = open_store(config.store)
    populate(store)
    with BackgroundServer(config, store) as server, httpx.Client(base_url=server.url) as client:
        with sqlite3.connect(tmp_path / "broken.db") as conn:
            conn.execute("DROP TABLE labels")  # the store breaks under a running server
        for response in (client.get("/v1/label", params={"target": PROD_DB}),
                         client.post("/v1/check", json={"target": PROD_DB, "action": "delete"}),
                         client.post("/v1/labels", json={"targets": [PROD_DB]}),
                         client.get("/v1/resources")):
            assert "treat every target as production" in error_of(response, 503)["message"].lower()


def test_unknown_route_and_method(api: httpx.Client) -> None:
    assert "/openapi.json" in error_of(api.get("/v2/label"), 404)["message"]
    error_of(api.put("/v1/label", json={}), 405)


def test_openapi_is_valid(api: httpx.Client) -> None:
    from openapi_spec_validator import validate

    spec = api.get("/openapi.json").json()
    validate(spec)
    for path in ("/v1/label", "/v1/labels", "/v1/check", "/v1/resources", "/v1/findings", "/v1/history",
                 "/v1/overrides", "/healthz", "/readyz", "/metrics"):
        assert path in spec["paths"], path
    assert set(spec["paths"]["/v1/overrides"]) == {"get", "post", "delete"}


# -- tokens --------------------------------------------------------------------------------------
def test_loopback_rules() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.5", "::", "envlabel.internal"))


def test_non_loopback_without_tokens_refuses(store: Store, tmp_path: Path) -> None:
    config = make_config(str(tmp_path / "x.db"))
    with pytest.raises(EnvlabelError, match=r"refusing to serve on 0\.0\.0\.0 without tokens.*api\.tokens"):
        build_app(config, store, host="0.0.0.0")
    secured = make_config(str(tmp_path / "x.db"), tokens=TOKENS)
    assert Tokens.for_host(secured.api.tokens, "0.0.0.0").required
    config_file = tmp_path / "envlabel.yaml"
    config_file.write_text(f"store: sqlite:///{tmp_path / 'x.db'}\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(config_file), "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 1 and "api.tokens" in result.output


def test_tokens_required_when_configured(secured: str) -> None:
    assert httpx.get(f"{secured}/healthz").status_code == 200  # probes need no token
    assert httpx.get(f"{secured}/readyz").status_code == 200
    missing = httpx.get(f"{secured}/v1/label", params={"target": PROD_DB})
    assert "api.tokens" in error_of(missing, 401)["message"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.get(f"{secured}/v1/label", params={"target": PROD_DB}, headers={"Authorization": "Bearer nope"})
    error_of(wrong, 401)
    hashed = {"Authorization": f"Bearer {sha(READER_TOKEN)}"}  # the stored hash is not the token
    error_of(httpx.get(f"{secured}/v1/label", params={"target": PROD_DB}, headers=hashed), 401)


def test_reader_reads_and_checks_but_cannot_override(secured: str) -> None:
    reader = httpx.Client(base_url=secured, headers={"Authorization": f"Bearer {READER_TOKEN}"})
    assert reader.get("/v1/label", params={"target": PROD_DB}).json()["environment"] == "production"
    assert reader.post("/v1/labels", json={"targets": [PROD_DB]}).status_code == 200
    assert reader.post("/v1/check", json={"target": PROD_DB, "action": "delete"}).json()["decision"] == "deny"
    assert reader.get("/v1/resources").status_code == 200
    assert reader.get("/v1/overrides").status_code == 200
    forbidden = reader.post("/v1/overrides", json={"target": SANDBOX_DB, "environment": "production",
                                                   "reason": "test"})
    assert "admin" in error_of(forbidden, 403)["message"]
    error_of(reader.delete("/v1/overrides", params={"target": SANDBOX_DB}), 403)


def test_admin_sets_and_removes_overrides(secured: str) -> None:
    admin = httpx.Client(base_url=secured, headers={"authorization": f"bearer {ADMIN_TOKEN}"})
    set_ = admin.post("/v1/overrides", json={"target": SANDBOX_DB, "environment": "production",
                                             "reason": "holds real customer data", "expires": "2h"})
    assert set_.status_code == 200, set_.text
    assert set_.json()["override"]["author"] == "token:ops"
    check = admin.post("/v1/check", json={"target": SANDBOX_DB, "action": "rds:DeleteDBInstance"}).json()
    assert (check["decision"], check["label"]["decided_by"]) == ("deny", "override")
    assert any("override by token:ops" in r for r in check["reasons"])
    bad = admin.post("/v1/overrides", json={"target": SANDBOX_DB, "environment": "prod", "reason": "x"})
    assert "production" in error_of(bad, 400)["message"]
    assert admin.delete("/v1/overrides", params={"target": SANDBOX_DB, "reason": "done"}).status_code == 200
    assert admin.get("/v1/label", params={"target": SANDBOX_DB}).json()["environment"] == "sandbox"
    error_of(admin.delete("/v1/overrides", params={"target": SANDBOX_DB}), 404)
