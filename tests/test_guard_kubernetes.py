"""envlabel.guard.kubernetes: the official kubernetes client, guarded, against the fake API server over HTTP,
checked by the real envlabel API over the real Kubernetes scanner's view of that cluster in SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from envlabel.client import Client
from envlabel.config import config_from_dict
from envlabel.errors import ActionDenied, ApprovalRequired, UnreachableError
from envlabel.guard.kubernetes import protect, target_of
from envlabel.service.core.pipeline import run_source
from envlabel.service.daemon.server import BackgroundServer
from envlabel.service.demo.fakes.kubernetes_api import FakeKubernetes, start_fake_cluster, write_kubeconfig
from envlabel.store import open_store
from tests.conftest import free_port

CLUSTER = "prod-eu"


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("DELETE", "/apis/apps/v1/namespaces/payments/deployments/api", ("k8s://c/payments/deployments/api", "delete")),
    ("PATCH", "/apis/apps/v1/namespaces/payments/deployments/api/scale", ("k8s://c/payments/deployments/api", "patch")),
    ("PUT", "/api/v1/namespaces/payments/configmaps/cfg", ("k8s://c/payments/configmaps/cfg", "update")),
    ("POST", "/api/v1/namespaces/payments/pods", ("k8s://c/namespaces/payments", "create")),
    ("DELETE", "/api/v1/namespaces/payments/pods", ("k8s://c/namespaces/payments", "deletecollection")),
    ("DELETE", "/api/v1/namespaces/payments", ("k8s://c/namespaces/payments", "delete")),
    ("PUT", "/api/v1/namespaces/payments/finalize", ("k8s://c/namespaces/payments", "update")),
    ("POST", "/api/v1/namespaces", ("k8s://c", "create")),
    ("DELETE", "/api/v1/nodes/node-1", ("k8s://c/nodes/node-1", "delete")),
    ("DELETE", "/apis/example.com/v1/namespaces/a/widgets/w", ("k8s://c/a/widgets/w", "delete")),
    ("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", ("k8s://c", "create")),
    ("POST", "/version", ("k8s://c", "create")),
    ("GET", "/api/v1/namespaces/payments/pods/p", None),
    ("HEAD", "/api/v1/namespaces", None),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", None),
])
def test_verb_and_target_come_from_method_and_path(method: str, path: str, expected: tuple[str, str] | None) -> None:
    assert target_of("c", method, path) == expected


NAMESPACES = {"payments": "production", "payments-stg": "staging", "scratch": "sandbox"}


@pytest.fixture
def fake_cluster() -> Iterator[tuple[str, FakeKubernetes]]:
    """Cluster prod-eu: a production, a staging and a sandbox namespace (by label), each with deployment ``api``."""
    url, fake = start_fake_cluster()
    for namespace, environment in NAMESPACES.items():
        fake.seed("namespaces", namespace, labels={"environment": environment})
        fake.seed("deployments", "api", namespace)
    yield url, fake
    fake.stop()


@pytest.fixture
def envlabel_url(tmp_path: Path, fake_cluster: tuple[str, FakeKubernetes]) -> Iterator[str]:
    """The real Kubernetes scanner's view of the fake cluster, in SQLite, served by the real API."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake_cluster[0])
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "sources": [
        {"name": "k8s", "type": "kubernetes", "kubeconfig": str(kubeconfig), "cluster": CLUSTER, "watch": False}]})
    store = open_store(config.store)
    assert run_source(config, store, config.sources[0]).complete
    with BackgroundServer(config, store) as server:
        yield server.url


def api_client(url: str) -> Any:
    configuration = k8s.Configuration()
    configuration.host = url
    return k8s.ApiClient(configuration)


def deployment_names(fake: FakeKubernetes, namespace: str) -> set[str]:
    return {name for (ns, name) in fake.objects[("apps", "v1", "deployments")] if ns == namespace}


def test_delete_in_production_is_denied_and_nothing_is_sent(fake_cluster: tuple[str, FakeKubernetes],
                                                            envlabel_url: str) -> None:
    url, fake = fake_cluster
    api = api_client(url)
    protect(api, cluster=CLUSTER, client=Client(envlabel_url))
    fake.clear_requests()
    with pytest.raises(ActionDenied) as caught:
        k8s.AppsV1Api(api).delete_namespaced_deployment("api", "payments")
    assert caught.value.check["target"] == "k8s://prod-eu/payments/deployments/api"
    assert caught.value.check["environment"] == "production"
    assert fake.requests == []
    assert "api" in deployment_names(fake, "payments")


def test_staging_modify_passes_delete_needs_approval_and_sandbox_delete_goes_through(
        fake_cluster: tuple[str, FakeKubernetes], envlabel_url: str) -> None:
    url, fake = fake_cluster
    api = api_client(url)
    protect(api, cluster=CLUSTER, client=Client(envlabel_url))
    apps = k8s.AppsV1Api(api)
    patched = apps.patch_namespaced_deployment("api", "payments-stg", {"metadata": {"labels": {"team": "orders"}}})
    assert patched.metadata.labels["team"] == "orders"
    with pytest.raises(ApprovalRequired):
        apps.delete_namespaced_deployment("api", "payments-stg")
    assert "api" in deployment_names(fake, "payments-stg")
    apps.delete_namespaced_deployment("api", "scratch")
    assert "api" not in deployment_names(fake, "scratch")


def test_creating_in_a_production_namespace_needs_approval(fake_cluster: tuple[str, FakeKubernetes],
                                                           envlabel_url: str) -> None:
    url, _ = fake_cluster
    api = api_client(url)
    protect(api, cluster=CLUSTER, client=Client(envlabel_url))
    core = k8s.CoreV1Api(api)
    with pytest.raises(ApprovalRequired) as caught:
        core.create_namespaced_config_map("payments", {"metadata": {"name": "flags"}, "data": {"a": "1"}})
    assert caught.value.check["target"] == "k8s://prod-eu/namespaces/payments"
    created = core.create_namespaced_config_map("scratch", {"metadata": {"name": "flags"}, "data": {"a": "1"}})
    assert created.metadata.name == "flags"


def test_reads_are_not_checked_and_an_unreachable_envlabel_blocks_writes(
        fake_cluster: tuple[str, FakeKubernetes]) -> None:
    url, fake = fake_cluster
    api = api_client(url)
    protect(api, cluster=CLUSTER, client=Client(f"http://127.0.0.1:{free_port()}"))
    apps = k8s.AppsV1Api(api)
    assert [d.metadata.name for d in apps.list_namespaced_deployment("scratch").items] == ["api"]
    with pytest.raises(UnreachableError, match="envlabel serve"):
        apps.delete_namespaced_deployment("api", "scratch")
    assert "api" in deployment_names(fake, "scratch")


def test_fail_open_lets_writes_through_while_envlabel_is_unreachable(
        fake_cluster: tuple[str, FakeKubernetes], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    url, fake = fake_cluster
    api = api_client(url)
    protect(api, cluster=CLUSTER, client=Client(f"http://127.0.0.1:{free_port()}"))
    monkeypatch.setenv("ENVLABEL_FAIL_OPEN", "yes")
    k8s.AppsV1Api(api).delete_namespaced_deployment("api", "scratch")
    assert "api" not in deployment_names(fake, "scratch")
    assert "ENVLABEL_FAIL_OPEN" in caplog.text


def test_protecting_again_replaces_the_guard(fake_cluster: tuple[str, FakeKubernetes], envlabel_url: str) -> None:
    url, fake = fake_cluster
    api = api_client(url)
    protect(api, cluster=CLUSTER, client=Client(f"http://127.0.0.1:{free_port()}"))
    protect(api, cluster=CLUSTER, client=Client(envlabel_url))  # replaces the unreachable one
    k8s.AppsV1Api(api).delete_namespaced_deployment("api", "scratch")
    assert "api" not in deployment_names(fake, "scratch")
    with pytest.raises(ApiException) as caught:  # allowed and sent: the fake answers 404
        k8s.AppsV1Api(api).delete_namespaced_deployment("api", "scratch")
    assert caught.value.status == 404


def test_the_dynamic_client_is_guarded_too(fake_cluster: tuple[str, FakeKubernetes], envlabel_url: str) -> None:
    url, fake = fake_cluster
    api = api_client(url)
    protect(api, cluster=CLUSTER, client=Client(envlabel_url))
    deployments = DynamicClient(api).resources.get(api_version="apps/v1", kind="Deployment")
    with pytest.raises(ActionDenied):
        deployments.delete(name="api", namespace="payments")
    assert "api" in deployment_names(fake, "payments")
