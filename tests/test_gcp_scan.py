"""The GCP scanner through the real google-cloud-resource-manager client against the fake Resource Manager,
into a real SQLite file through service.pipeline, and `envlabel scan` as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from envlabel.config import Config, GcpSource, config_from_dict
from envlabel.discovery.gcp import PERMISSIONS, GcpScanner, default_retry
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanResult
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_scan, run_source
from envlabel.service.core.query import Query
from envlabel.service.demo.fakes.gcp_crm import CRM, EXAMPLE_HIGHLIGHTS, ORG_ID, FakeCrm
from envlabel.store import open_store
from envlabel.store.sql import Store

ROOT = Path(__file__).resolve().parent.parent
ORG = f"organizations/{ORG_ID}"
#: what the example estate holds: the organization, 5 folders and 5 live projects; 15 resources below them
HIERARCHY, ASSETS = 11, 15


@pytest.fixture
def config(gcp_url: str, tmp_path: Path) -> Config:
    return config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}",
                             "sources": [{"name": "gcp", "type": "gcp", "organization": ORG_ID,
                                          "api_endpoint": gcp_url}]})


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    opened = open_store(config.store)
    yield opened
    opened.close()


def scan(config: Config, deadline_s: float = 5.0) -> ScanResult:
    source = config.sources[0]
    assert isinstance(source, GcpSource)
    # real backoff, tiny delays: the retry's own sleeps are the only waiting in these tests
    return GcpScanner(source, retry=default_retry(deadline_s, initial_s=0.001, maximum_s=0.01), page_size=2).scan()


def by_name(result: ScanResult) -> dict[str, Resource]:
    return {r.name: r for r in result.resources}


def test_scan_records_the_tree_with_labels_and_tags(gcp_crm: FakeCrm, config: Config) -> None:
    result = scan(config)
    assert result.complete and not result.errors
    found = by_name(result)
    org = found["example.com"]
    assert (org.id, org.kind, org.parent, org.path) == (CRM + ORG, "gcp:organization", None, "/example.com")
    payments_folder = found["Payments"]
    assert payments_folder.kind == "gcp:folder" and payments_folder.name_signal
    assert payments_folder.path == "/example.com/Production/Payments"
    assert payments_folder.parent == found["Production"].id
    assert found["Production"].tags == {"environment": "Production"}
    project = found["payments-prod"]
    number = gcp_crm.project_number("payments-prod")
    assert (project.id, project.kind, project.parent) == (CRM + "projects/payments-prod", "gcp:project",
                                                         payments_folder.id)
    assert project.aliases == (CRM + number,)
    # its labels; the inherited team and environment tags stay on the folders that carry them
    assert project.tags == {"env": "prod", "team": "payments"}
    assert found["ml-playground"].tags == {"environment": "Development"}
    assert "old-experiment" not in found  # DELETE_REQUESTED: gone
    assert len(result.resources) == HIERARCHY + ASSETS
    live = {f"projects/{n.project_id}" for n in gcp_crm.nodes.values() if n.project_id and n.state == "ACTIVE"}
    assert result.scopes == {ORG} | {n for n in gcp_crm.nodes if n.startswith("folders/")} | live
    # every listing paged (two items a page) and each tag key/value was looked up once
    assert any(r.params.get("pageToken") for r in gcp_crm.requests if r.path == "/v3/folders")
    gets = [r.path for r in gcp_crm.requests if r.path.startswith(("/v3/tagKeys/", "/v3/tagValues/"))]
    assert len(gets) == len(set(gets))


def test_a_tag_binding_replaces_a_label_of_the_same_key(gcp_crm: FakeCrm, config: Config) -> None:
    gcp_crm.bind("projects/web-staging", gcp_crm.tag_value(f"{ORG_ID}/environment/Production"))
    assert by_name(scan(config))["web-staging"].tags == {"environment": "Production"}


def test_throttled_calls_are_retried_then_succeed(gcp_crm: FakeCrm, config: Config) -> None:
    gcp_crm.throttle(3)
    gcp_crm.throttle(3, path_contains="/v3/effectiveTags")
    result = scan(config)
    assert result.complete and len(result.resources) == HIERARCHY + ASSETS
    assert [r.status for r in gcp_crm.requests][:4] == [429, 429, 429, 200]  # the organization, fourth time
    assert [r.status for r in gcp_crm.requests if r.path == "/v3/effectiveTags"][:4] == [429, 429, 429, 200]


def test_rate_limit_403s_are_retried_but_refusals_are_not(gcp_crm: FakeCrm, config: Config) -> None:
    gcp_crm.throttle(2, path_contains="/v3/folders", status=403)
    assert scan(config).complete
    gcp_crm.deny(gcp_crm.folder_named("Shared"), "resourcemanager.folders.list")
    before = len(gcp_crm.requests)
    result = scan(config)
    assert not result.complete
    refused = [r for r in gcp_crm.requests[before:] if r.status == 403]
    assert len(refused) == 1  # a refusal is asked once, not retried until the deadline


def test_quota_that_never_recovers_is_an_error_not_an_empty_estate(gcp_crm: FakeCrm, config: Config) -> None:
    gcp_crm.throttle(10**9)
    result = scan(config, deadline_s=0.2)
    assert not result.complete and result.resources == []
    assert "quota" in result.errors[0].hint and result.errors[0].scope == ORG


def commit(store: Store, config: Config, result: ScanResult) -> Any:
    return commit_scan(store, Taxonomy.from_config(config), result, utcnow())


@pytest.mark.parametrize("fault", ["deny-listing", "deny-everything", "internal-error", "unauthenticated"])
def test_a_failing_folder_makes_the_scan_incomplete_and_removes_nothing(
        gcp_crm: FakeCrm, config: Config, store: Store, fault: str) -> None:
    first = commit(store, config, scan(config))
    assert first.complete and first.resources == HIERARCHY + ASSETS
    production = gcp_crm.folder_named("Production")
    if fault == "deny-listing":
        gcp_crm.deny(production, "resourcemanager.folders.list")
    elif fault == "deny-everything":
        gcp_crm.deny(production)
    else:
        gcp_crm.break_resource(production, 500 if fault == "internal-error" else 401)
    result = scan(config)
    assert not result.complete
    error = result.errors[0]
    assert error.scope == production and "/example.com/Production" in error.message
    if fault == "deny-listing":
        assert "resourcemanager.folders.list" in error.hint
        assert "orders-prod" in by_name(result)  # projects.list on the folder still works
    elif fault == "deny-everything":
        assert "resourcemanager.hierarchyNodes.listTagBindings" in error.hint
        assert "Production" not in by_name(result)  # its tags are unknown: neither it nor its subtree
    elif fault == "unauthenticated":
        assert "credentials were refused" in error.hint
    assert "payments-prod" not in by_name(result)
    second = commit(store, config, result)
    assert (second.complete, second.removed) == (False, 0)
    query = Query(config, store)
    for target in ("projects/payments-prod", production, "projects/orders-prod"):
        body = query.label(target)
        assert body["found"] and body["environment"] == "production", body


def test_project_labeled_dev_under_a_production_folder_is_production_with_conflict(
        gcp_crm: FakeCrm, config: Config, store: Store) -> None:
    summary = run_source(config, store, config.sources[0])  # the registered scanner, as `envlabel scan` runs it
    assert summary.complete and summary.resources == HIERARCHY + ASSETS
    query = Query(config, store)
    body = query.label("projects/orders-prod")
    assert (body["environment"], body["conflict"], body["decided_by"]) == ("production", True, "inherited")
    signals = {(e["signal"], e["environment"]) for e in body["evidence"]}
    assert {("tag", "sandbox"), ("inherited", "production")} <= signals
    assert any("env=dev" in e["detail"] for e in body["evidence"])
    number = gcp_crm.project_number("orders-prod")
    assert query.label(number)["environment"] == "production"  # projects/NUMBER resolves too
    assert query.label("projects/shared-logging")["environment"] == "unknown"
    sandbox = query.label("projects/ml-playground")
    assert (sandbox["environment"], sandbox["decided_by"], sandbox["conflict"]) == ("sandbox", "tag", False)
    assert [query.label(target)["environment"] for _, target, _ in EXAMPLE_HIGHLIGHTS] == [
        expected for _, _, expected in EXAMPLE_HIGHLIGHTS]  # what the demo promises


def test_declared_permissions_cover_every_call_and_match_the_shipped_role(gcp_crm: FakeCrm, config: Config) -> None:
    role = yaml.safe_load((ROOT / "discovery" / "gcp-role.yaml").read_text())
    assert tuple(sorted(role["includedPermissions"])) == PERMISSIONS
    gcp_crm.grant_only(role["includedPermissions"])  # the fake refuses anything outside the role
    result = scan(config)
    assert result.complete, result.errors
    used = {r.permission for r in gcp_crm.requests}
    assert used <= set(PERMISSIONS)
    assert used == set(PERMISSIONS)  # and nothing declared goes unused


def test_envlabel_scan_cli_against_the_fake(gcp_crm: FakeCrm, gcp_url: str, tmp_path: Path) -> None:
    config_file = tmp_path / "envlabel.yaml"
    config_file.write_text(yaml.safe_dump({
        "store": f"sqlite:///{tmp_path / 'cli.db'}",
        "sources": [{"name": "gcp-prod", "type": "gcp", "organization": f"organizations/{ORG_ID}",
                     "api_endpoint": gcp_url}]}))
    envlabel = str(Path(sys.executable).parent / "envlabel")
    done = subprocess.run([envlabel, "scan", "--config", str(config_file), "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    [summary] = json.loads(done.stdout)
    assert (summary["source"], summary["complete"], summary["resources"]) == ("gcp-prod", True,
                                                                                     HIERARCHY + ASSETS)
    got = subprocess.run([envlabel, "get", "projects/orders-prod", "--json", "--config", str(config_file)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert got.returncode == 0, got.stderr
    body = json.loads(got.stdout)
    assert (body["environment"], body["conflict"], body["kind"]) == ("production", True, "gcp:project")
    gcp_crm.deny(gcp_crm.folder_named("Staging"), "resourcemanager.projects.list")
    failed = subprocess.run([envlabel, "scan", "--config", str(config_file)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert failed.returncode == 1
    assert "INCOMPLETE" in failed.stdout and "resourcemanager.projects.list" in failed.stdout


def test_missing_credentials_are_a_scan_error_that_says_what_to_do(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    result = GcpScanner(GcpSource(name="gcp", type="gcp", organization=ORG_ID)).scan()
    assert not result.complete and result.resources == []
    assert "GOOGLE_APPLICATION_CREDENTIALS" in result.errors[0].hint
    assert "missing-key.json" in result.errors[0].message


def test_a_gke_cluster_whose_parent_is_the_project_inherits_its_environment(config: Config, store: Store) -> None:
    run_source(config, store, config.sources[0])
    cluster = Resource("k8s://payments-gke", "kubernetes", "k8s:cluster", "payments-gke",
                       parent=CRM + "projects/payments-prod", scope="k8s://payments-gke")
    commit(store, config, ScanResult("payments-gke", [cluster], scopes=frozenset({cluster.scope})))
    body = Query(config, store).label("k8s://payments-gke")
    assert (body["environment"], body["decided_by"]) == ("production", "inherited")
    assert any("gcp:folder /example.com/Production" in e["detail"] for e in body["evidence"])
