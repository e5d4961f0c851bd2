"""The Kubernetes scanner against the fake API server: records, pages, 410 restarts, RBAC errors, nothing partial."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from envlabel.config import config_from_dict
from envlabel.discovery.kubernetes import BUILTIN_KINDS, KindSpec, KubernetesScanner, transform_object
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import ScanResult
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.service.demo.fakes.kubernetes_api import Kind, write_kubeconfig
from envlabel.store import open_store
from tests.conftest import free_port
from tests.kubernetes_cluster import FakeCluster, fake_cluster, seed_payments

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    with fake_cluster(tmp_path) as running:
        seed_payments(running.fake)
        yield running


def test_transform_reshapes_metadata_into_records() -> None:
    deploy = KindSpec("apps", "v1", "deployments", True)
    record = transform_object("prod-eu", deploy, {"metadata": {"name": "api", "namespace": "payments",
                                                              "labels": {"env": "prod"}, "annotations": {"x": "y"}}})
    assert (record.id, record.parent, record.kind) == (
        "k8s://prod-eu/payments/deployments/api", "k8s://prod-eu/namespaces/payments", "k8s:deployments")
    assert record.tags == {"env": "prod"} and record.scope == "k8s://prod-eu" and not record.aliases
    node = transform_object("prod-eu", KindSpec("", "v1", "nodes", False), {"metadata": {"name": "n1"}})
    assert (node.id, node.parent, node.tags) == ("k8s://prod-eu/nodes/n1", "k8s://prod-eu", {})
    widget = transform_object("prod-eu", KindSpec("example.com", "v1", "widgets", True),
                              {"metadata": {"name": "w", "namespace": "payments"}})
    assert widget.id == "k8s://prod-eu/payments/widgets/w"
    assert widget.aliases == ("k8s://prod-eu/payments/widgets.example.com/w",)


def test_scan_records_every_kind_under_its_namespace(cluster: FakeCluster) -> None:
    source = cluster.source(environment=None, parent="arn:aws:eks:us-east-1:222222222222:cluster/orders")
    result = KubernetesScanner(source, page_size=2).scan()
    assert result.complete and result.scopes == {"k8s://prod-eu"}
    by_id = {r.id: r for r in result.resources}
    assert by_id["k8s://prod-eu"].parent == "arn:aws:eks:us-east-1:222222222222:cluster/orders"
    assert by_id["k8s://prod-eu/namespaces/payments"].tags == {"environment": "staging", "team": "pay"}
    assert by_id["k8s://prod-eu/nodes/node-1"].parent == "k8s://prod-eu"
    kinds = {r.kind for r in result.resources if r.parent == "k8s://prod-eu/namespaces/payments"}
    assert kinds == {f"k8s:{k.resource}" for k in BUILTIN_KINDS if k.namespaced}
    assert not [r for r in result.resources if "secret" in r.id or "secret" in r.kind]
    requests = cluster.fake.requests
    assert not [r for r in requests if r.resource == "secrets"]
    assert {r.verb for r in requests} == {"list"}
    continued = [r for r in requests if r.resource == "namespaces" and "continue" in r.query]
    assert len(continued) == 1  # default, payments, scratch in pages of 2


def test_scan_commits_and_labels(cluster: FakeCluster, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    summary = commit_scan(store, Taxonomy(), KubernetesScanner(cluster.source()).scan(), T0, T0)
    assert summary.complete and summary.resources == 14  # the seeded configmap is not listed by default
    query = Query(config_from_dict({}), store)
    api = query.label("k8s://prod-eu/payments/deploy/api", now=T0)
    assert (api["environment"], api["decided_by"], api["conflict"]) == ("staging", "inherited", False)
    worker = query.label("k8s://prod-eu/scratch/deployments/worker", now=T0)
    assert (worker["environment"], worker["conflict"]) == ("production", True)  # tagged prod in a dev namespace
    assert query.label("k8s://prod-eu/nodes/node-1", now=T0)["environment"] == "unknown"


def test_forbidden_kind_is_an_error_naming_the_rule_and_removes_nothing(cluster: FakeCluster, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    scanner = KubernetesScanner(cluster.source())
    commit_scan(store, Taxonomy(), scanner.scan(), T0, T0)
    cluster.fake.forbid("deployments", "apps")
    result = scanner.scan()
    assert not result.complete and not result.scopes
    [error] = result.errors
    assert "forbidden" in error.message and "deployments" in error.message
    assert 'API group "apps"' in error.hint and "kubernetes-clusterrole.yaml" in error.hint
    summary = commit_scan(store, Taxonomy(), result, T0, T0)
    assert summary.removed == 0
    stored = store.get("k8s://prod-eu/payments/deployments/api")
    assert stored is not None and stored.tombstoned_at is None


def test_expired_continue_token_restarts_the_list(cluster: FakeCluster) -> None:
    expired: list[str] = []

    def compact_once(kind: Kind, token: str) -> None:
        if token and kind.resource == "namespaces" and not expired:
            expired.append(token)
            cluster.fake.compact()

    cluster.fake.on_list = compact_once
    result = KubernetesScanner(cluster.source(), page_size=1).scan()
    assert expired and result.complete
    names = sorted(r.name for r in result.resources if r.kind == "k8s:namespaces")
    assert names == ["default", "payments", "scratch"]  # complete, and nothing twice


def test_a_list_that_keeps_expiring_is_an_error_not_a_short_list(cluster: FakeCluster) -> None:
    cluster.fake.on_list = lambda kind, token: cluster.fake.compact() if token else None
    result = KubernetesScanner(cluster.source(), page_size=1).scan()
    assert not result.complete
    assert any("410" in e.message for e in result.errors)


def test_unreachable_server_and_bad_kubeconfig_are_errors(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    source = config_from_dict({"sources": [{"type": "kubernetes", "name": "gone", "kubeconfig": str(kubeconfig)}]})
    result = KubernetesScanner(source.sources[0]).scan()  # type: ignore[arg-type]
    assert not result.complete and "cannot reach" in result.errors[0].message
    assert isinstance(result, ScanResult)
    missing = config_from_dict({"sources": [{"type": "kubernetes", "name": "x", "kubeconfig": str(tmp_path / "no")}]})
    bad = KubernetesScanner(missing.sources[0]).scan()  # type: ignore[arg-type]
    assert not bad.complete and "kubeconfig" in bad.errors[0].message and "context" in bad.errors[0].hint


def test_configured_custom_resources_are_listed_and_secrets_refused(cluster: FakeCluster) -> None:
    cluster.fake.define("example.com", "v1", "widgets", "Widget")
    cluster.fake.seed("widgets", "blue", "payments", labels={"env": "prod"})
    source = cluster.source(resources=[{"group": "example.com", "version": "v1", "resource": "widgets"}])
    result = KubernetesScanner(source).scan()
    assert result.complete
    [widget] = [r for r in result.resources if r.kind == "k8s:widgets"]
    assert widget.tags == {"env": "prod"} and widget.parent == "k8s://prod-eu/namespaces/payments"
    refused = KubernetesScanner(cluster.source(resources=[{"resource": "secrets"}])).scan()
    assert not refused.complete and "never read" in refused.errors[0].message
    assert not [r for r in cluster.fake.requests if r.resource == "secrets"]


def test_an_injected_client_is_used_as_is(cluster: FakeCluster) -> None:
    import kubernetes

    configuration = kubernetes.client.Configuration(host=cluster.url)
    with kubernetes.client.ApiClient(configuration) as client:
        source = config_from_dict({"sources": [{"type": "kubernetes", "name": "injected"}]}).sources[0]
        result = KubernetesScanner(source, api_client=client).scan()  # type: ignore[arg-type]
    assert result.complete and result.scopes == {"k8s://injected"}
    assert "k8s://injected/payments/deployments/api" in {r.id for r in result.resources}


def test_the_demo_cluster_in_a_production_cluster(tmp_path: Path) -> None:
    from envlabel.service.demo.fakes.kubernetes_api import seed_demo_cluster

    with fake_cluster(tmp_path) as demo:
        seed_demo_cluster(demo.fake)
        store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
        commit_scan(store, Taxonomy(), KubernetesScanner(demo.source(environment="production")).scan(), T0, T0)
        query = Query(config_from_dict({}), store)
        plain = query.label("k8s://prod-eu/orders/deployments/orders-api", now=T0)
        assert (plain["environment"], plain["conflict"]) == ("production", False)
        for conflicted in ("k8s://prod-eu/namespaces/orders-preview", "k8s://prod-eu/orders/deploy/load-generator"):
            label = query.label(conflicted, now=T0)
            assert (label["environment"], label["conflict"]) == ("production", True)
        assert not [r for r in demo.fake.requests if r.resource == "secrets"]
