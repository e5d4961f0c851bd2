"""A failed scope changes nothing: an incomplete scan holds the labels of what it could not see.

The attack: a container is relabeled to a weaker environment (a namespace to staging, an account moved to the
Staging OU, a folder re-tagged) while the listing of what sits in it fails (RBAC 403, AccessDenied). The
incomplete scan sees the container, not its contents; their labels must not relax on that, or an agent may
delete production. Each test drives the real scanner over real sockets (the fake Kubernetes API server with
the official client, moto behind the AccessDenied proxy, the fake Resource Manager) into a real SQLite file,
asks the real API or the guard, and shows the production object is still there. A complete scan then applies
the change; a stricter parent tightens the held labels at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from kubernetes import client as k8s

from envlabel.client import Client
from envlabel.config import Config, config_from_dict
from envlabel.errors import ActionDenied
from envlabel.guard.kubernetes import protect
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource
from envlabel.service.cli.labels import format_summary, summary_json
from envlabel.service.core.pipeline import ScanSummary, commit_changes, run_source, tightens
from envlabel.service.daemon.server import BackgroundServer
from envlabel.service.daemon.watch import KubernetesWatcher
from envlabel.service.demo.fakes.gcp_crm import CRM, FakeCrm, start_fake_gcp
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.aws_denied import DeniedProxy, deny_account
from tests.aws_estate import EstateInfo, fresh_estate
from tests.kubernetes_cluster import FakeCluster, fake_cluster

ORDERS_NS = "k8s://prod-eu/namespaces/orders"
ORDERS_API = "k8s://prod-eu/orders/deployments/api"
ORDERS_WORKER = "k8s://prod-eu/orders/deployments/worker"
ORDERS_SVC = "k8s://prod-eu/orders/services/api"


def environment(store: Store, target: str) -> str | None:
    stored = store.get(target)
    return stored.resolution.environment if stored is not None and stored.resolution is not None else None


# -- Kubernetes: a namespace relabeled while its deployments cannot be listed -------------------------------------
@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    """Namespace orders (production by its label) with deployments api and worker and a service api, none
    labeled: all production through the namespace."""
    with fake_cluster(tmp_path) as running:
        running.fake.seed("namespaces", "orders", labels={"environment": "production"})
        running.fake.seed("deployments", "api", "orders")
        running.fake.seed("deployments", "worker", "orders")
        running.fake.seed("services", "api", "orders")
        yield running


def k8s_config(cluster: FakeCluster, tmp_path: Path) -> Config:
    return config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "sources": [
        {"name": "prod-eu", "type": "kubernetes", "kubeconfig": str(cluster.kubeconfig), "watch": False}]})


def scan(config: Config, store: Store) -> ScanSummary:
    """One scan through the real path: the source's scanner over HTTP, then the commit."""
    return run_source(config, store, config.sources[0])


def test_a_namespace_relabeled_while_its_deployments_list_fails_keeps_them_production(
        cluster: FakeCluster, tmp_path: Path) -> None:
    config = k8s_config(cluster, tmp_path)
    store = open_store(config.store)
    assert scan(config, store).complete
    assert environment(store, ORDERS_API) == "production"

    # the attack: the namespace says staging now, and the deployments' list answers 403
    cluster.fake.set_labels("namespaces", "orders", {"environment": "staging"})
    cluster.fake.forbid("deployments", "apps")
    partial = scan(config, store)

    assert not partial.complete and partial.removed == 0
    assert partial.held == 2  # api and worker would have relaxed to staging
    assert "deployments" in partial.errors[0].message
    assert "2 label(s) it could not see held, not relaxed" in format_summary(partial)
    assert summary_json(partial)["held"] == 2
    assert environment(store, ORDERS_NS) == "staging"  # what the scan saw is written, from its fresh data
    assert environment(store, ORDERS_SVC) == "staging"  # services were listed: relabeled as seen
    for held in (ORDERS_API, ORDERS_WORKER):
        stored = store.get(held)
        assert stored is not None and stored.resolution is not None
        assert stored.resolution.environment == "production"
        assert [h.resolution.environment for h in store.history(held)] == ["production"]  # nothing written

    # an agent asks through the real API and the guard over HTTP: the delete is denied, the deployment stays
    with BackgroundServer(config, store) as server:
        body = httpx.post(f"{server.url}/v1/check", json={"target": ORDERS_API, "action": "delete"},
                          timeout=10).json()
        assert (body["environment"], body["decision"]) == ("production", "deny")
        configuration = k8s.Configuration()
        configuration.host = cluster.url
        api = k8s.ApiClient(configuration)
        protect(api, cluster="prod-eu", client=Client(server.url))
        with pytest.raises(ActionDenied):
            k8s.AppsV1Api(api).delete_namespaced_deployment("api", "orders")
    assert ("orders", "api") in cluster.fake.objects[("apps", "v1", "deployments")]

    # RBAC fixed: the next, complete scan sees the deployments and applies the namespace's change
    cluster.fake.forbidden.discard(("apps", "deployments"))
    complete = scan(config, store)
    assert complete.complete and complete.held == 0
    assert environment(store, ORDERS_API) == environment(store, ORDERS_WORKER) == "staging"


def test_a_stricter_parent_tightens_held_labels_at_once(cluster: FakeCluster, tmp_path: Path) -> None:
    cluster.fake.set_labels("namespaces", "orders", {"environment": "sandbox"})
    config = k8s_config(cluster, tmp_path)
    store = open_store(config.store)
    assert scan(config, store).complete
    assert environment(store, ORDERS_API) == "sandbox"

    cluster.fake.set_labels("namespaces", "orders", {"environment": "production"})
    cluster.fake.forbid("deployments", "apps")
    partial = scan(config, store)
    assert not partial.complete and partial.held == 0
    # stricter is always safe: the deployments it could not see are production now, not in a scan's time
    assert environment(store, ORDERS_API) == environment(store, ORDERS_WORKER) == "production"


def test_a_held_deployment_with_its_own_new_tag_is_not_relaxed_on_stale_data(cluster: FakeCluster,
                                                                            tmp_path: Path) -> None:
    """Why the hold: the namespace's label moved down to the workloads (a common migration). The scan that
    could not list the deployments must not relax them on their old, tagless record."""
    config = k8s_config(cluster, tmp_path)
    store = open_store(config.store)
    assert scan(config, store).complete
    cluster.fake.set_labels("deployments", "api", {"environment": "production"}, namespace="orders", group="apps")
    cluster.fake.set_labels("namespaces", "orders", {"environment": None})
    cluster.fake.forbid("deployments", "apps")
    assert not scan(config, store).complete
    assert environment(store, ORDERS_NS) == "unknown"  # decided as production all the same
    assert environment(store, ORDERS_API) == "production"
    cluster.fake.forbidden.discard(("apps", "deployments"))
    assert scan(config, store).complete
    api = store.get(ORDERS_API)
    assert api is not None and api.resolution is not None
    assert (api.resolution.environment, api.resolution.decided_by) == ("production", "tag")  # its own tag now


def test_tightening_is_the_checks_order() -> None:
    taxonomy = Taxonomy()
    assert tightens(taxonomy, "staging", "production") and tightens(taxonomy, "sandbox", "staging")
    assert not tightens(taxonomy, "production", "staging") and not tightens(taxonomy, "staging", "staging")
    # unknown and an environment the config dropped are decided as production: no change either way
    assert tightens(taxonomy, "staging", "unknown") and not tightens(taxonomy, "unknown", "production")
    assert not tightens(taxonomy, "production", "unknown") and not tightens(taxonomy, "unknown", "sandbox")
    assert not tightens(taxonomy, "qa", "staging") and tightens(taxonomy, "sandbox", "qa")


def test_commit_changes_holds_kinds_whose_watch_is_not_current(tmp_path: Path) -> None:
    """The watch path: a namespace event relabels its subtree, but not a kind whose own watch is failing."""
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    taxonomy = Taxonomy()

    def namespace(env: str) -> Resource:
        return Resource(ORDERS_NS, "kubernetes", "k8s:namespaces", "orders", "k8s://prod-eu",
                        {"environment": env}, "k8s://prod-eu")

    deploy = Resource(ORDERS_API, "kubernetes", "k8s:deployments", "api", ORDERS_NS, {}, "k8s://prod-eu")
    service = Resource(ORDERS_SVC, "kubernetes", "k8s:services", "api", ORDERS_NS, {}, "k8s://prod-eu")
    commit_changes(store, taxonomy, "prod-eu", [namespace("production"), deploy, service])
    assert environment(store, ORDERS_API) == "production"
    changes = commit_changes(store, taxonomy, "prod-eu", [namespace("staging")], held_kinds={"k8s:deployments"})
    assert changes == 2  # the namespace and its service
    assert environment(store, ORDERS_SVC) == "staging" and environment(store, ORDERS_API) == "production"
    # the deployment itself observed (its watch event) is labeled from its fresh data even while held
    assert commit_changes(store, taxonomy, "prod-eu", [deploy], held_kinds={"k8s:deployments"}) == 0
    changed = Resource(ORDERS_API, "kubernetes", "k8s:deployments", "api", ORDERS_NS, {"team": "a"},
                       "k8s://prod-eu")
    assert commit_changes(store, taxonomy, "prod-eu", [changed], held_kinds={"k8s:deployments"}) == 1
    assert environment(store, ORDERS_API) == "staging"


def eventually(check: Callable[[], bool], deadline_s: float = 10.0) -> None:
    """Poll until ``check`` holds (readiness polling, not a timing assertion)."""
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"not true within {deadline_s}s")
        time.sleep(0.01)


def test_a_watch_does_not_relax_a_kind_whose_own_watch_fails(cluster: FakeCluster, tmp_path: Path) -> None:
    config = k8s_config(cluster, tmp_path)
    store = open_store(config.store)
    assert scan(config, store).complete
    cluster.fake.forbid("deployments", "apps")
    watcher = KubernetesWatcher(config, store, cluster.source(), max_backoff=0.2)
    watcher.start()
    try:
        others = len(watcher.scanner.kinds) - 1
        eventually(lambda: sum(watcher.stats.relists.values()) == others
                   and any("deployments" in e.message for e in watcher.stats.errors))
        cluster.fake.set_labels("namespaces", "orders", {"environment": "staging"})
        # the service is relabeled in the same transaction as the deployments would be
        eventually(lambda: environment(store, ORDERS_SVC) == "staging")
        assert environment(store, ORDERS_API) == environment(store, ORDERS_WORKER) == "production"
    finally:
        watcher.stop()


# -- AWS: an account moved to the Staging OU while its own resources cannot be listed ----------------------------
@pytest.fixture(scope="module")
def estate(moto_url: str) -> EstateInfo:
    return fresh_estate(moto_url)


def test_an_account_moved_to_staging_while_it_is_denied_keeps_its_resources_production(
        estate: EstateInfo, tmp_path: Path) -> None:
    payments = estate.accounts["payments-eu"]
    eu_api = estate.arns["payments-eu/payments-api"]
    with DeniedProxy(estate.endpoint_url, lambda _: False) as proxy:
        config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}",
                                   "sources": [estate.source(endpoint_url=proxy.url)]})
        store = open_store(config.store)
        assert scan(config, store).complete
        assert environment(store, eu_api) == "production"

        org = boto3.client("organizations", region_name="us-east-1", endpoint_url=estate.endpoint_url)
        [parent] = org.list_parents(ChildId=payments)["Parents"]
        staging_ou = estate.ous["/Root/Staging"].rsplit("/", 1)[1]
        org.move_account(AccountId=payments, SourceParentId=parent["Id"], DestinationParentId=staging_ou)
        proxy.deny = deny_account(payments)
        try:
            partial = scan(config, store)
            assert not partial.complete and partial.removed == 0 and partial.held > 0
            assert {e.scope.split("/")[0] for e in partial.errors} == {payments}
            assert environment(store, payments) == "staging"  # the org tree was read: the account moved
            assert environment(store, eu_api) == "production"  # its instance was not: held

            with BackgroundServer(config, store) as server:
                body = Client(server.url).check(eu_api, "ec2:TerminateInstances")
            assert (body["environment"], body["decision"]) == ("production", "deny")
            instance = eu_api.rsplit("/", 1)[1]
            described = member_ec2(estate, payments).describe_instances(InstanceIds=[instance])
            assert described["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"

            proxy.deny = lambda _: False
            assert scan(config, store).complete
            assert environment(store, eu_api) == "staging"  # seen again: the move is applied
        finally:  # the module's estate is shared: put the account back
            org.move_account(AccountId=payments, SourceParentId=staging_ou, DestinationParentId=parent["Id"])


def member_ec2(estate: EstateInfo, account: str) -> Any:
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=estate.endpoint_url)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{estate.role}",
                            RoleSessionName="test")["Credentials"]
    return boto3.client("ec2", region_name="eu-west-1", endpoint_url=estate.endpoint_url,
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


# -- GCP: a folder re-tagged while a project's tags cannot be read ------------------------------------------------
def test_a_folder_retagged_while_a_projects_tags_are_denied_keeps_it_production(tmp_path: Path) -> None:
    crm = FakeCrm()
    org = crm.add_organization("100", "example.com")
    key = crm.add_tag_key(org, "environment")
    production, staging = crm.add_tag_value(key, "Production"), crm.add_tag_value(key, "Staging")
    apps = crm.add_folder(org, "Apps")
    crm.bind(apps, production)
    orders = crm.add_project(apps, "orders")
    crm.add_project(apps, "billing")
    url, server = start_fake_gcp(crm)
    try:
        config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "sources": [
            {"name": "gcp", "type": "gcp", "organization": "100", "api_endpoint": url}]})
        store = open_store(config.store)
        assert scan(config, store).complete
        orders_id, billing_id = CRM + "projects/orders", CRM + "projects/billing"
        assert environment(store, orders_id) == environment(store, billing_id) == "production"

        crm.bind(apps, staging)  # replaces the folder's environment binding
        crm.deny(orders, "resourcemanager.hierarchyNodes.listEffectiveTags")
        partial = scan(config, store)
        assert not partial.complete and partial.held == 1
        assert environment(store, CRM + apps) == "staging" and environment(store, billing_id) == "staging"
        assert environment(store, orders_id) == "production"
        assert store.get(orders_id) is not None
    finally:
        server.stop()
