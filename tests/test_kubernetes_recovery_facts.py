"""Recovery facts of claims, volumes, classes and workloads: scanned from the fake API server, stored, and kept
current by the watches (a volume patched to Retain or back to Delete re-derives its claim's facts)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from envlabel.config import Config, config_from_dict
from envlabel.discovery.kubernetes import FACT_KINDS, KubernetesScanner
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.service.daemon.watch import KubernetesWatcher
from envlabel.service.demo.fakes.kubernetes_api import FakeKubernetes, seed_demo_cluster
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.kubernetes_cluster import FakeCluster, fake_cluster

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PREFIX = "k8s://prod-eu"
DATA = f"{PREFIX}/orders/persistentvolumeclaims/data"
KEPT = f"{PREFIX}/orders/persistentvolumeclaims/kept"
PENDING = f"{PREFIX}/orders/persistentvolumeclaims/pending"


def seed_volumes(fake: FakeKubernetes) -> None:
    """A Delete class and a Retain class; ``data`` bound under Delete, ``kept`` under Retain, ``pending`` not
    bound yet; a deployment mounting ``data`` and a StatefulSet with a claim template."""
    fake.seed("namespaces", "orders", labels={"environment": "production"})
    fake.seed("storageclasses", "gp3")
    fake.seed("storageclasses", "gp3-retain", fields={"reclaimPolicy": "Retain"})
    for claim in ("data", "kept", "pending"):
        fake.seed("persistentvolumeclaims", claim, "orders",
                  fields={"spec": {"storageClassName": "gp3-retain" if claim == "kept" else "gp3"}})
    fake.bind_claim("data", "orders", "Delete", "gp3", volume="pv-data")
    fake.bind_claim("kept", "orders", "Retain", "gp3-retain", volume="pv-kept")
    fake.seed("deployments", "api", "orders", fields={"spec": {"template": {"spec": {"volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}, {"name": "tmp", "emptyDir": {}}]}}}})
    fake.seed("statefulsets", "db", "orders", fields={"spec": {"volumeClaimTemplates": [
        {"metadata": {"name": "pgdata"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}})


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    with fake_cluster(tmp_path) as running:
        seed_volumes(running.fake)
        yield running


def scanned(cluster: FakeCluster) -> dict[str, Resource]:
    result = KubernetesScanner(cluster.source(), page_size=2).scan()
    assert result.complete, result.errors
    return {r.id: r for r in result.resources}


def test_claims_take_the_reclaim_policy_of_their_volume_else_their_class(cluster: FakeCluster) -> None:
    by_id = scanned(cluster)
    assert by_id[DATA].facts == {"reclaim_policy": "Delete", "storage_class": "gp3", "volume": "pv-data"}
    assert by_id[KEPT].facts == {"reclaim_policy": "Retain", "storage_class": "gp3-retain", "volume": "pv-kept"}
    assert by_id[PENDING].facts == {"reclaim_policy": "Delete", "storage_class": "gp3"}  # the class's, for now
    assert by_id[f"{PREFIX}/persistentvolumes/pv-data"].facts == {
        "reclaim_policy": "Delete", "storage_class": "gp3", "claim": "orders/data"}
    assert by_id[f"{PREFIX}/storageclasses/gp3-retain"].facts == {"reclaim_policy": "Retain"}
    assert by_id[f"{PREFIX}/storageclasses/gp3"].parent == PREFIX  # cluster-scoped records


def test_a_volume_patched_to_retain_outranks_its_delete_class(cluster: FakeCluster) -> None:
    kind = cluster.fake.kind("persistentvolumes")
    cluster.fake.patch(kind, None, "pv-data", {"spec": {"persistentVolumeReclaimPolicy": "Retain"}})
    assert scanned(cluster)[DATA].facts["reclaim_policy"] == "Retain"


def test_workloads_name_the_claims_they_mount_and_create(cluster: FakeCluster) -> None:
    by_id = scanned(cluster)
    assert by_id[f"{PREFIX}/orders/deployments/api"].facts == {"pvc_refs": ["data"]}
    assert by_id[f"{PREFIX}/orders/statefulsets/db"].facts == {"pvc_refs": [], "volume_claim_templates": ["pgdata"]}
    assert by_id[f"{PREFIX}/namespaces/orders"].facts == {}  # a kind without facts


def test_only_the_fact_kinds_are_read_whole_and_configmaps_stay_metadata_only(cluster: FakeCluster) -> None:
    cluster.fake.seed("configmaps", "settings", "orders", fields={"data": {"password": "hunter2"}})
    cluster.fake.clear_requests()
    KubernetesScanner(cluster.source(resources=[{"resource": "configmaps"}])).scan()  # configmaps are opt-in
    assert "configmaps" in {r.resource for r in cluster.fake.requests}
    whole = {r.resource for r in cluster.fake.requests if "PartialObjectMetadata" not in r.accept}
    assert whole == {resource for _, resource in FACT_KINDS}
    assert "configmaps" not in whole and not [r for r in cluster.fake.requests if r.resource == "secrets"]


def test_a_forbidden_volume_list_leaves_the_policy_unreadable_never_guessed(cluster: FakeCluster) -> None:
    cluster.fake.forbid("persistentvolumes")
    result = KubernetesScanner(cluster.source()).scan()
    assert not result.complete and "persistentvolumes" in result.errors[0].message
    by_id = {r.id: r for r in result.resources}
    assert by_id[DATA].facts == {"storage_class": "gp3", "volume": "pv-data", "unreadable": ["reclaim_policy"]}
    assert by_id[PENDING].facts["reclaim_policy"] == "Delete"  # unbound: its class was readable


def test_a_claim_bound_to_a_volume_that_is_gone_has_no_policy(cluster: FakeCluster) -> None:
    cluster.fake.remove("persistentvolumes", "pv-data")
    facts = scanned(cluster)[DATA].facts
    assert "reclaim_policy" not in facts and "unreadable" not in facts  # unknown: not its class's Delete or Retain


def test_the_fake_serves_volumes_and_classes_the_client_deserializes(cluster: FakeCluster) -> None:
    import kubernetes

    with kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)) as api:
        core, storage = kubernetes.client.CoreV1Api(api), kubernetes.client.StorageV1Api(api)
        volume = core.read_persistent_volume("pv-data")
        assert (volume.spec.persistent_volume_reclaim_policy, volume.spec.claim_ref.name) == ("Delete", "data")
        assert core.read_namespaced_persistent_volume_claim("data", "orders").spec.volume_name == "pv-data"
        classes = {c.metadata.name: c.reclaim_policy for c in storage.list_storage_class().items}
        assert classes == {"gp3": "Delete", "gp3-retain": "Retain"}


def test_facts_are_stored_and_shown_in_the_label(cluster: FakeCluster, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    commit_scan(store, Taxonomy(), KubernetesScanner(cluster.source()).scan(), T0, T0)
    stored = store.get(DATA)
    assert stored is not None and stored.resource.facts["reclaim_policy"] == "Delete"
    label = Query(config_from_dict({}), store).label("k8s://prod-eu/orders/pvc/data", now=T0)
    assert label["facts"]["reclaim_policy"] == "Delete" and label["environment"] == "production"


def test_the_demo_cluster_orders_data_is_deleted_with_its_claim(tmp_path: Path) -> None:
    with fake_cluster(tmp_path) as demo:
        seed_demo_cluster(demo.fake)
        by_id = {r.id: r for r in KubernetesScanner(demo.source()).scan().resources}
    assert by_id[f"{PREFIX}/orders/persistentvolumeclaims/data-orders-db-0"].facts["reclaim_policy"] == "Delete"
    assert by_id[f"{PREFIX}/orders/statefulsets/orders-db"].facts["volume_claim_templates"] == ["data"]


# -- watches ------------------------------------------------------------------------------------------
def eventually(check: Callable[[], bool], deadline_s: float = 10.0) -> None:
    """Poll until ``check`` holds (readiness polling, not a timing assertion)."""
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"not true within {deadline_s}s")
        time.sleep(0.01)


def stored_facts(store: Store, target: str) -> dict[str, object]:
    stored = store.get(target)
    return dict(stored.resource.facts) if stored is not None else {}


@pytest.fixture
def watched(cluster: FakeCluster, tmp_path: Path) -> Iterator[tuple[FakeCluster, Store]]:
    config: Config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}"})
    store = open_store(config.store)
    watcher = KubernetesWatcher(config, store, cluster.source())
    watcher.start()
    try:
        assert watcher.wait_synced(10)
        # the claims' relist may run before the volumes': the volumes' relist then re-derives them
        eventually(lambda: stored_facts(store, DATA).get("reclaim_policy") == "Delete")
        yield cluster, store
    finally:
        watcher.stop()


def test_a_watched_volume_patched_to_retain_and_back_updates_its_claim(watched: tuple[FakeCluster, Store]) -> None:
    cluster, store = watched
    kind = cluster.fake.kind("persistentvolumes")
    cluster.fake.patch(kind, None, "pv-data", {"spec": {"persistentVolumeReclaimPolicy": "Retain"}})
    eventually(lambda: stored_facts(store, DATA).get("reclaim_policy") == "Retain")
    assert stored_facts(store, f"{PREFIX}/persistentvolumes/pv-data")["reclaim_policy"] == "Retain"
    # the dangerous direction: a claim must never keep saying Retain once its volume deletes on release
    cluster.fake.patch(kind, None, "pv-data", {"spec": {"persistentVolumeReclaimPolicy": "Delete"}})
    eventually(lambda: stored_facts(store, DATA).get("reclaim_policy") == "Delete")


def test_a_watched_claim_binding_and_volume_removal_update_its_facts(watched: tuple[FakeCluster, Store]) -> None:
    cluster, store = watched
    cluster.fake.bind_claim("pending", "orders", "Retain", "gp3", volume="pv-pending")
    eventually(lambda: stored_facts(store, PENDING) == {
        "reclaim_policy": "Retain", "storage_class": "gp3", "volume": "pv-pending"})
    cluster.fake.remove("persistentvolumes", "pv-pending")
    eventually(lambda: "reclaim_policy" not in stored_facts(store, PENDING))
    cluster.fake.set_labels("persistentvolumeclaims", "pending", {"team": "orders"}, "orders")
    eventually(lambda: (s := store.get(PENDING)) is not None and s.resource.tags.get("team") == "orders")
    assert "reclaim_policy" not in stored_facts(store, PENDING)  # still unknown: its volume is gone


def test_a_watched_deployment_that_mounts_a_new_claim_updates_its_refs(watched: tuple[FakeCluster, Store]) -> None:
    cluster, store = watched
    api = f"{PREFIX}/orders/deployments/api"
    assert stored_facts(store, api) == {"pvc_refs": ["data"]}
    cluster.fake.patch(cluster.fake.kind("deployments"), "orders", "api", {"spec": {"template": {"spec": {
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "kept", "persistentVolumeClaim": {"claimName": "kept"}}]}}}})
    eventually(lambda: stored_facts(store, api) == {"pvc_refs": ["data", "kept"]})
