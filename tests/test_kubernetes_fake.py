"""The fake Kubernetes API server, driven by the official client: complete objects, pages, selectors, watches, 410s."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from kubernetes.client import ApiException

from envlabel.service.demo.fakes.kubernetes_api import (
    FakeKubernetes,
    parse_selector,
    start_fake_cluster,
    write_kubeconfig,
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeKubernetes, kubernetes.client.ApiClient]]:
    url, fake = start_fake_cluster()
    api = kubernetes.config.new_client_from_config(config_file=str(write_kubeconfig(tmp_path / "kubeconfig", url)))
    try:
        yield fake, api
    finally:
        api.close()
        fake.stop()


def test_every_kind_deserializes_into_the_client_models(cluster: tuple[FakeKubernetes, object]) -> None:
    fake, api = cluster
    for resource in ("deployments", "statefulsets", "daemonsets", "jobs", "cronjobs", "services", "ingresses",
                     "persistentvolumeclaims", "configmaps", "secrets", "leases"):
        fake.seed(resource, "orders", "default", labels={"app": "orders"})
    fake.seed("nodes", "node-1", labels={"topology.kubernetes.io/zone": "a"})
    core, apps = kubernetes.client.CoreV1Api(api), kubernetes.client.AppsV1Api(api)
    batch = kubernetes.client.BatchV1Api(api)
    assert apps.list_deployment_for_all_namespaces().items[0].spec.template.spec.containers[0].name == "app"
    assert apps.read_namespaced_stateful_set("orders", "default").spec.service_name == "orders"
    assert apps.list_daemon_set_for_all_namespaces().items[0].spec.selector.match_labels == {"app": "orders"}
    assert batch.list_cron_job_for_all_namespaces().items[0].spec.schedule == "*/5 * * * *"
    assert batch.read_namespaced_job("orders", "default").spec.template.spec.restart_policy == "Never"
    assert core.list_service_for_all_namespaces().items[0].spec.ports[0].port == 80
    assert kubernetes.client.NetworkingV1Api(api).list_ingress_for_all_namespaces().items[0].spec.rules[0].host
    assert core.list_persistent_volume_claim_for_all_namespaces().items[0].status.phase == "Bound"
    assert core.read_node("node-1").status.conditions[0].type == "Ready"
    assert core.read_namespaced_secret("orders", "default").type == "Opaque"
    assert kubernetes.client.CoordinationV1Api(api).read_namespaced_lease("orders", "default").metadata.uid
    meta = core.read_namespaced_config_map("orders", "default").metadata
    assert meta.resource_version and meta.creation_timestamp and meta.labels == {"app": "orders"}


def test_discovery_documents(cluster: tuple[FakeKubernetes, object]) -> None:
    _, api = cluster
    assert kubernetes.client.VersionApi(api).get_code().git_version.startswith("v1.")
    assert kubernetes.client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {g.name for g in kubernetes.client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "batch", "networking.k8s.io", "coordination.k8s.io"} <= groups
    names = {r.name for r in kubernetes.client.AppsV1Api(api).get_api_resources().resources}
    assert names == {"deployments", "statefulsets", "daemonsets"}


def test_create_update_patch_delete_with_optimistic_concurrency(cluster: tuple[FakeKubernetes, object]) -> None:
    _, api = cluster
    core = kubernetes.client.CoreV1Api(api)
    meta = kubernetes.client.V1ObjectMeta(name="payments", labels={"environment": "staging"})
    created = core.create_namespace(kubernetes.client.V1Namespace(metadata=meta))
    with pytest.raises(ApiException) as exists:
        core.create_namespace(kubernetes.client.V1Namespace(metadata=meta))
    assert exists.value.status == 409
    merged = core.patch_namespace("payments", {"metadata": {"labels": {"team": "pay"}}})
    assert merged.metadata.labels == {"environment": "staging", "team": "pay"}
    patched = core.patch_namespace("payments", [{"op": "replace", "path": "/metadata/labels/environment",
                                                 "value": "prod"}])
    assert patched.metadata.labels["environment"] == "prod"
    stale = kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(
        name="payments", resource_version=created.metadata.resource_version))
    with pytest.raises(ApiException) as conflict:
        core.replace_namespace("payments", stale)
    assert conflict.value.status == 409
    core.delete_namespace("payments")
    with pytest.raises(ApiException) as gone:
        core.read_namespace("payments")
    assert gone.value.status == 404


def test_label_selectors() -> None:
    labels = {"env": "prod", "tier": "web"}
    assert parse_selector("env=prod,tier")(labels)
    assert parse_selector("env in (prod, staging),!missing")(labels)
    assert not parse_selector("env notin (prod)")(labels)
    assert not parse_selector("tier!=web")(labels)
    assert parse_selector("")(labels)


def test_pages_follow_continue_and_expire_after_compaction(cluster: tuple[FakeKubernetes, object]) -> None:
    fake, api = cluster
    for i in range(5):
        fake.seed("configmaps", f"cm-{i}", "default", labels={"env": "prod" if i % 2 else "dev"})
    core = kubernetes.client.CoreV1Api(api)
    names, token = [], None
    while True:
        page = core.list_namespaced_config_map("default", limit=2, _continue=token)
        names += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"cm-{i}" for i in range(5)]
    assert [c.metadata.name for c in core.list_config_map_for_all_namespaces(label_selector="env=prod").items] == [
        "cm-1", "cm-3"]
    first = core.list_namespaced_config_map("default", limit=2)
    fake.compact()
    with pytest.raises(ApiException) as expired:
        core.list_namespaced_config_map("default", limit=2, _continue=first.metadata._continue)
    assert expired.value.status == 410 and '"reason":"Expired"' in expired.value.body
    with pytest.raises(ApiException) as invalid:
        core.list_namespaced_config_map("default", limit=2, _continue="not-a-token")
    assert invalid.value.status == 410


def test_watch_streams_events_bookmarks_and_410(cluster: tuple[FakeKubernetes, object]) -> None:
    fake, api = cluster
    core = kubernetes.client.CoreV1Api(api)
    start = core.list_namespace().metadata.resource_version
    fake.seed("namespaces", "payments", labels={"environment": "staging"})
    fake.set_labels("namespaces", "payments", {"environment": "production"})
    fake.remove("namespaces", "payments")
    seen = []
    watch = kubernetes.watch.Watch()
    for event in watch.stream(core.list_namespace, resource_version=start, allow_watch_bookmarks=True,
                              timeout_seconds=5):
        seen.append((event["type"], event["raw_object"]["metadata"].get("name")))
        if event["type"] == "DELETED":
            fake.bookmark()  # on demand, to the open watch
        if event["type"] == "BOOKMARK":
            watch.stop()
    assert seen == [("ADDED", "payments"), ("MODIFIED", "payments"), ("DELETED", "payments"), ("BOOKMARK", None)]
    fake.compact()
    with pytest.raises(ApiException) as too_old:
        for _ in kubernetes.watch.Watch().stream(core.list_namespace, resource_version=start, timeout_seconds=5):
            pass
    assert too_old.value.status == 410


def test_request_log_names_verbs_and_forbidden_answers_403(cluster: tuple[FakeKubernetes, object]) -> None:
    fake, api = cluster
    fake.forbid("secrets")
    core = kubernetes.client.CoreV1Api(api)
    core.list_namespace()
    with pytest.raises(ApiException) as forbidden:
        core.list_secret_for_all_namespaces()
    assert forbidden.value.status == 403
    assert [(r.verb, r.resource) for r in fake.requests] == [("list", "namespaces"), ("list", "secrets")]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_apply_label_get_delete(tmp_path: Path) -> None:
    url, fake = start_fake_cluster()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url)
    manifest = tmp_path / "payments.yaml"
    manifest.write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: payments\n  labels:\n"
                        "    environment: staging\n")

    def kubectl(*args: str) -> str:
        done = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        kubectl("apply", "--validate=false", "-f", str(manifest))
        kubectl("label", "namespace", "payments", "environment=prod", "--overwrite")
        assert json.loads(kubectl("get", "namespace", "payments", "-o", "json"))["metadata"]["labels"] == {
            "environment": "prod"}
        kubectl("delete", "namespace", "payments")
        assert ("", "payments") not in fake.objects[("", "v1", "namespaces")]
        assert {"create", "patch", "delete"} <= {r.verb for r in fake.requests if r.resource == "namespaces"}
    finally:
        fake.stop()
