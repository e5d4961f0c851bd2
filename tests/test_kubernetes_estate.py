"""Across providers: a cluster inherits the label of its EKS cluster, scanned by the AWS source from moto."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from envlabel.config import Config, config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanResult
from envlabel.service.core.pipeline import commit_scan, run_source
from envlabel.service.core.query import Query
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.aws_estate import EstateInfo, fresh_estate
from tests.kubernetes_cluster import FakeCluster, fake_cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    with fake_cluster(tmp_path) as running:
        running.fake.seed("namespaces", "orders")
        running.fake.seed("namespaces", "preview", labels={"environment": "staging"})
        running.fake.seed("deployments", "api", "orders")
        running.fake.seed("deployments", "api", "preview")
        yield running


def scan_cluster(config: Config, store: Store) -> None:
    summary = run_source(config, store, config.source("orders-eks"))
    assert summary.complete, summary.errors


def test_eks_cluster_in_a_production_account_makes_its_namespaces_production(
        moto_url: str, cluster: FakeCluster, tmp_path: Path) -> None:
    estate: EstateInfo = fresh_estate(moto_url)
    eks_arn = estate.arns["orders-prod/orders"]
    k8s = {"name": "orders-eks", "type": "kubernetes", "kubeconfig": str(cluster.kubeconfig), "parent": eks_arn}
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "sources": [
        estate.source(regions=["us-east-1"]), k8s]})  # the EKS cluster's region is all this test needs
    store = open_store(config.store)
    assert run_source(config, store, config.source("aws")).complete
    scan_cluster(config, store)
    query = Query(config, store)
    assert query.label(eks_arn)["environment"] == "production"
    namespace = query.label("k8s://orders-eks/namespaces/orders")
    assert (namespace["environment"], namespace["decided_by"], namespace["conflict"]) == (
        "production", "inherited", False)
    assert query.label("k8s://orders-eks/orders/deployments/api")["environment"] == "production"
    preview = query.label("k8s://orders-eks/preview/deployments/api")
    assert (preview["environment"], preview["conflict"]) == ("production", True)
    staging_ns = query.label("k8s://orders-eks/namespaces/preview")
    assert staging_ns["conflict"] is True
    assert {e["signal"] for e in staging_ns["evidence"]} == {"tag", "inherited"}


def test_configured_cluster_environment_and_a_hand_built_parent(cluster: FakeCluster, tmp_path: Path) -> None:
    """Without an AWS source: the parent committed by hand, and a cluster declared staging by config."""
    eks = "arn:aws:eks:us-east-1:222222222222:cluster/orders"
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    now = datetime.now(UTC)
    account = Resource("222222222222", "aws", "aws:account", "orders-prod", None, {"env": "prod"}, "org")
    commit_scan(store, Taxonomy(), ScanResult("aws", [account, Resource(eks, "aws", "eks:cluster", "orders",
                                                                          "222222222222", {}, "222222222222")]),
                now, now)
    k8s = {"name": "orders-eks", "type": "kubernetes", "kubeconfig": str(cluster.kubeconfig), "parent": eks}
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "sources": [k8s]})
    scan_cluster(config, store)
    assert Query(config, store).label("k8s://orders-eks/orders/deployments/api")["environment"] == "production"
    declared = {"name": "orders-eks", "type": "kubernetes", "kubeconfig": str(cluster.kubeconfig),
                "environment": "staging"}
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'other.db'}", "sources": [declared]})
    other = open_store(config.store)
    scan_cluster(config, other)
    label = Query(config, other).label("k8s://orders-eks/orders/deployments/api")
    assert (label["environment"], label["decided_by"]) == ("staging", "inherited")
    assert "configured environment" in label["evidence"][0]["detail"]
