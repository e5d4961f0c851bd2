"""Resources below the GCP projects: the GcpScanner's Cloud Asset search through the real google-cloud-asset
client against the fake (served with the fake Resource Manager), into a real SQLite file; the bounded lookup
by name; GKE clusters as the parents of a kubernetes source scanned from a fake API server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envlabel.config import DEFAULT_GCP_ASSET_TYPES, Config, GcpSource, config_from_dict
from envlabel.discovery.gcp import GcpScanner, default_retry, lookup_gcp_asset
from envlabel.discovery.lookup import LookupFailed
from envlabel.errors import ConfigError
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanResult
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import ScanSummary, commit_scan, run_source
from envlabel.service.core.query import Query
from envlabel.service.demo.fakes.gcp_assets import GKE_CLUSTER, SEARCH_PERMISSION
from envlabel.service.demo.fakes.gcp_crm import CRM, ORG_ID, FakeCrm
from envlabel.store import open_store
from envlabel.store.sql import Store

ORG = f"organizations/{ORG_ID}"
VM1 = "//compute.googleapis.com/projects/ml-playground/zones/us-central1-a/instances/vm1"
TRAINER = "//compute.googleapis.com/projects/ml-playground/zones/us-central1-a/instances/trainer"
PAYMENTS_DB = "//cloudsql.googleapis.com/projects/payments-prod/instances/payments-db"
EXPORTS = "//storage.googleapis.com/projects/_/buckets/payments-exports"


def gcp_config(url: str, tmp_path: Path, **source: Any) -> Config:
    return config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}",
                             "sources": [{"name": "gcp", "type": "gcp", "organization": ORG_ID,
                                          "api_endpoint": url, **source}]})


@pytest.fixture
def config(gcp_url: str, tmp_path: Path) -> Config:
    return gcp_config(gcp_url, tmp_path)


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    opened = open_store(config.store)
    yield opened
    opened.close()


def gcp_source(config: Config) -> GcpSource:
    source = config.sources[0]
    assert isinstance(source, GcpSource)
    return source


def scan(config: Config, deadline_s: float = 5.0) -> ScanResult:
    """Two assets a page, so every search pages; real backoff with tiny delays."""
    return GcpScanner(gcp_source(config), retry=default_retry(deadline_s, initial_s=0.001, maximum_s=0.01),
                      page_size=2, asset_page_size=2).scan()


def commit(store: Store, config: Config, result: ScanResult) -> ScanSummary:
    return commit_scan(store, Taxonomy.from_config(config), result, utcnow())


def by_id(result: ScanResult) -> dict[str, Resource]:
    return {r.id: r for r in result.resources}


def searches(gcp_crm: FakeCrm, since: int = 0) -> list[Any]:
    return [r for r in gcp_crm.requests[since:] if r.path.endswith(":searchAllResources")]


def test_resources_below_projects_are_recorded_with_their_labels_and_project(gcp_crm: FakeCrm,
                                                                            config: Config) -> None:
    result = scan(config)
    assert result.complete, result.errors
    found = by_id(result)
    vm = found[VM1]
    assert (vm.kind, vm.name, vm.parent, vm.scope, vm.region, dict(vm.tags)) == (
        "compute.Instance", "vm1", CRM + "projects/ml-playground", "projects/ml-playground", "us-central1-a", {})
    assert found[TRAINER].tags == {"env": "prod"}
    # a bucket's name carries no project, a secret's only its number: the parent is the project's id all the same
    assert found[EXPORTS].parent == CRM + "projects/payments-prod" and found[EXPORTS].kind == "storage.Bucket"
    number = gcp_crm.project_number("ml-playground").split("/")[1]
    secret = found[f"//secretmanager.googleapis.com/projects/{number}/secrets/hf-token"]
    assert (secret.parent, secret.kind) == (CRM + "projects/ml-playground", "secretmanager.Secret")
    assert found[PAYMENTS_DB].kind == "sqladmin.Instance" and found[GKE_CLUSTER].kind == "container.Cluster"
    assert {r.kind for r in result.resources if not r.kind.startswith("gcp:")} == {
        t.replace(".googleapis.com/", ".") for t in DEFAULT_GCP_ASSET_TYPES}
    # one search per asset type on the organization, each paged
    calls = searches(gcp_crm)
    assert {r.resource for r in calls} == {ORG} and {r.permission for r in calls} == {SEARCH_PERMISSION}
    assert {r.params["assetTypes"] for r in calls} == set(DEFAULT_GCP_ASSET_TYPES)
    assert any(r.params.get("pageToken") for r in calls)


def test_a_tag_bound_to_a_resource_replaces_its_label_of_the_same_key(gcp_crm: FakeCrm, config: Config,
                                                                      store: Store) -> None:
    gcp_crm.assets.assets[VM1].labels["environment"] = "dev"
    gcp_crm.assets.bind(VM1, gcp_crm.tag_value(f"{ORG_ID}/environment/Production"))
    result = scan(config)
    assert by_id(result)[VM1].tags == {"environment": "Production"}
    commit(store, config, result)
    body = Query(config, store).label(VM1)
    assert (body["environment"], body["decided_by"]) == ("production", "tag")


def test_labels_of_resources_below_projects(config: Config, store: Store) -> None:
    summary = run_source(config, store, config.sources[0])  # the registered scanner, as `envlabel scan` runs it
    assert summary.complete
    query = Query(config, store)
    vm = query.label(VM1)  # the issue: this VM was "never seen" and denied as production
    assert (vm["found"], vm["environment"], vm["decided_by"]) == (True, "sandbox", "inherited")
    trainer = query.label(TRAINER)  # a VM labeled env=prod in a sandbox project is production by its own label
    assert (trainer["environment"], trainer["decided_by"]) == ("production", "tag")
    assert query.label(PAYMENTS_DB)["environment"] == "production"
    spanner = query.label("//spanner.googleapis.com/projects/orders-prod/instances/orders-spanner")
    assert (spanner["environment"], spanner["conflict"]) == ("production", True)  # env=sandbox can't relax it
    assert query.label("//storage.googleapis.com/projects/_/buckets/shared-logs-archive")["environment"] == "unknown"


def test_a_resource_cloud_asset_names_by_project_number_is_found_by_its_project_id(config: Config,
                                                                                   store: Store) -> None:
    """Cloud Asset names secrets ``projects/NUMBER/secrets/S``; gcloud (and an agent) name them by project id. The
    id form is stored as an alias, so the check finds the secret itself, not a never-seen name."""
    assert run_source(config, store, config.sources[0]).complete
    by_id_form = Query(config, store).label("//secretmanager.googleapis.com/projects/ml-playground/secrets/hf-token")
    assert by_id_form["found"] and by_id_form["kind"] == "secretmanager.Secret"
    assert "/projects/ml-playground/" not in by_id_form["id"]  # the stored name is Cloud Asset's, by number


@pytest.mark.parametrize("fault", ["failed-page", "permission-denied", "quota"])
def test_a_failed_search_makes_the_scan_incomplete_and_removes_or_relaxes_nothing(
        gcp_crm: FakeCrm, config: Config, store: Store, fault: str) -> None:
    first = commit(store, config, scan(config))
    assert first.complete
    # the production VM in the sandbox project loses its label, and a production database disappears
    gcp_crm.assets.assets[TRAINER].labels.clear()
    del gcp_crm.assets.assets[PAYMENTS_DB]
    if fault == "failed-page":
        # the VMs' second page (two a page): the first, which held the VM, does not count either
        gcp_crm.assets.fail_after(1, asset_type="compute.googleapis.com/Instance")
    elif fault == "permission-denied":
        gcp_crm.deny(ORG, SEARCH_PERMISSION)
    else:
        gcp_crm.throttle(10**9, path_contains=":searchAllResources")
    result = scan(config, deadline_s=0.2)
    assert not result.complete
    error = result.errors[0]
    assert error.scope == ORG and "search_all_resources" in error.message and "nothing was removed" in error.hint
    if fault == "permission-denied":
        assert SEARCH_PERMISSION in error.hint and "enable cloudasset.googleapis.com" in error.hint
        assert len(result.errors) == len(DEFAULT_GCP_ASSET_TYPES)  # every type refused, each asked once
        assert len([r for r in searches(gcp_crm) if r.status == 403]) == len(DEFAULT_GCP_ASSET_TYPES)
    elif fault == "quota":
        assert "Cloud Asset quota" in error.hint
    assert not any(s.startswith("projects/") for s in result.scopes)  # no project's assets count as listed
    assert "payments-prod" in {r.name for r in result.resources}  # the hierarchy was still read
    second = commit(store, config, result)
    assert (second.complete, second.removed) == (False, 0)
    query = Query(config, store)
    assert query.label(PAYMENTS_DB)["found"] and query.label(PAYMENTS_DB)["environment"] == "production"
    assert query.label(TRAINER)["environment"] == "production"  # held: not relaxed to the project's sandbox
    # the next complete scan removes the database and relabels the VM
    gcp_crm.clear_faults()
    third = commit(store, config, scan(config))
    assert third.complete and third.removed == 1
    assert not query.label(PAYMENTS_DB)["found"] and query.label(TRAINER)["environment"] == "sandbox"


def test_throttled_searches_are_retried_then_succeed(gcp_crm: FakeCrm, config: Config) -> None:
    gcp_crm.throttle(3, path_contains=":searchAllResources")
    gcp_crm.throttle(2, path_contains=":searchAllResources", status=403)  # the rate-limit 403 older APIs send
    result = scan(config)
    assert result.complete and VM1 in by_id(result)
    assert [r.status for r in searches(gcp_crm)][:5] == [429, 429, 429, 403, 403]


def test_asset_types_are_configurable(gcp_crm: FakeCrm, gcp_url: str, tmp_path: Path) -> None:
    buckets_only = gcp_config(gcp_url, tmp_path, asset_types=["storage.googleapis.com/Bucket"])
    result = scan(buckets_only)
    assert {r.kind for r in result.resources if not r.kind.startswith("gcp:")} == {"storage.Bucket"}
    assert {r.params["assetTypes"] for r in searches(gcp_crm)} == {"storage.googleapis.com/Bucket"}
    before = len(gcp_crm.requests)
    hierarchy_only = scan(gcp_config(gcp_url, tmp_path, asset_types=[]))
    assert hierarchy_only.complete and not searches(gcp_crm, before)
    assert all(r.kind.startswith("gcp:") for r in hierarchy_only.resources)
    with pytest.raises(ConfigError) as bad:
        gcp_config(gcp_url, tmp_path, asset_types=["compute.Instance"])
    assert "sources.0.asset_types" in str(bad.value) and "compute.googleapis.com/Instance" in str(bad.value)


def test_lookup_reads_one_resource_by_name_within_its_timeout(gcp_crm: FakeCrm, config: Config) -> None:
    source = gcp_source(config)
    trainer = lookup_gcp_asset(source, TRAINER, 5.0)
    assert trainer is not None
    assert (trainer.id, trainer.kind, trainer.parent, dict(trainer.tags)) == (
        TRAINER, "compute.Instance", CRM + "projects/ml-playground", {"env": "prod"})
    [call] = searches(gcp_crm)
    assert call.params["query"] == f'name="{TRAINER}"' and call.resource == ORG
    bucket = lookup_gcp_asset(source, EXPORTS, 5.0)
    assert bucket is not None and bucket.parent == CRM + "projects/payments-prod"
    assert lookup_gcp_asset(source, VM1.replace("vm1", "vm"), 5.0) is None  # a name containing another's: none
    gcp_crm.deny(ORG, SEARCH_PERMISSION)
    with pytest.raises(LookupFailed) as denied:
        lookup_gcp_asset(source, TRAINER, 5.0)
    assert SEARCH_PERMISSION in denied.value.hint
    with pytest.raises(LookupFailed) as malformed:
        lookup_gcp_asset(source, "projects/ml-playground/zones/us-central1-a/instances/vm1", 5.0)
    assert "full resource name" in malformed.value.message


def test_lookup_gives_up_on_quota_within_its_timeout(gcp_crm: FakeCrm, config: Config) -> None:
    gcp_crm.throttle(10**9, path_contains=":searchAllResources")
    with pytest.raises(LookupFailed) as throttled:
        lookup_gcp_asset(gcp_source(config), TRAINER, 0.3)
    assert "quota" in throttled.value.hint and "nothing was removed" not in throttled.value.hint


def test_a_namespace_in_a_gke_cluster_of_a_production_project_is_production(config: Config, store: Store,
                                                                           tmp_path: Path) -> None:
    from envlabel.service.demo.fakes.kubernetes_api import start_fake_cluster, write_kubeconfig

    url, fake = start_fake_cluster()
    try:
        fake.seed("namespaces", "checkout")
        fake.seed("namespaces", "preview", labels={"env": "sandbox"})
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url, context="gke_payments-prod_europe-west1")
        both = config_from_dict({"store": config.store, "sources": [
            config.sources[0].model_dump(), {"name": "payments-gke", "type": "kubernetes",
                                             "kubeconfig": str(kubeconfig), "context": "gke_payments-prod_europe-west1",
                                             "cluster": "payments-gke", "parent": GKE_CLUSTER, "watch": False}]})
        for source in both.sources:
            assert run_source(both, store, source).complete
    finally:
        fake.stop()
    query = Query(both, store)
    cluster = query.label(GKE_CLUSTER)
    assert (cluster["environment"], cluster["decided_by"]) == ("production", "inherited")
    for namespace in ("k8s://payments-gke/namespaces/checkout", "k8s://payments-gke/namespaces/preview"):
        body = query.label(namespace)  # a sandbox label inside a production cluster does not relax it
        assert (body["found"], body["environment"]) == (True, "production"), body
    assert query.label("k8s://payments-gke/namespaces/preview")["conflict"]
