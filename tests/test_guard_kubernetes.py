"""envlabel.guard.kubernetes: the official kubernetes client, guarded, against the fake API server over HTTP,
checked by the real envlabel API over the real Kubernetes scanner's view of that cluster in SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.stream import portforward, stream

from envlabel.client import Client
from envlabel.config import config_from_dict
from envlabel.errors import ActionDenied, ApprovalRequired, Blocked, UnreachableError
from envlabel.guard.kubernetes import api_path, protect, target_of
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
    ("GET", "/api/v1/namespaces/payments/pods/api-0/exec", ("k8s://c/payments/pods/api-0", "create pods/exec")),
    ("POST", "/api/v1/namespaces/payments/pods/api-0/exec", ("k8s://c/payments/pods/api-0", "create pods/exec")),
    ("GET", "/api/v1/namespaces/payments/pods/api-0/attach", ("k8s://c/payments/pods/api-0", "create pods/attach")),
    ("GET", "/api/v1/namespaces/payments/pods/api-0/portforward",
     ("k8s://c/payments/pods/api-0", "create pods/portforward")),
    ("GET", "/api/v1/namespaces/payments/pods/api-0/log", None),
    ("GET", "/api/v1/namespaces/payments/pods/exec", None),  # a pod named exec
])
def test_verb_and_target_come_from_method_and_path(method: str, path: str, expected: tuple[str, str] | None) -> None:
    assert target_of("c", method, path) == expected


PAYMENTS_API = "/api/v1/namespaces/payments/services/api"


@pytest.mark.parametrize(("url", "host", "expected"), [
    ("http://k/api/v1/namespaces/scratch/../payments/services/api", "http://k", PAYMENTS_API),
    ("http://k/api/v1/namespaces/payments/%73ervices/api", "http://k", PAYMENTS_API),
    ("http://k/api/v1/namespaces/./payments//services/api?x=1", "http://k", PAYMENTS_API),
    ("http://k//api/v1/namespaces/payments/services/api", "http://k", PAYMENTS_API),
    ("https://k/base/api/v1/namespaces/payments/services/api", "https://k/base/", PAYMENTS_API),
    ("https://k/basement/api/v1/nodes/n", "https://k/base", "/basement/api/v1/nodes/n"),
])
def test_the_path_is_read_as_the_api_server_reads_it(url: str, host: str, expected: str) -> None:
    assert api_path(url, host) == expected


NAMESPACES = {"payments": "production", "payments-stg": "staging", "scratch": "sandbox"}


@pytest.fixture
def fake_cluster() -> Iterator[tuple[str, FakeKubernetes]]:
    """Cluster prod-eu: a production, a staging and a sandbox namespace (by label), each with deployment and
    service ``api``; pod ``api-0`` in production and pod ``shell`` in the sandbox."""
    url, fake = start_fake_cluster()
    fake.define("", "v1", "pods", "Pod")
    for namespace, environment in NAMESPACES.items():
        fake.seed("namespaces", namespace, labels={"environment": environment})
        fake.seed("deployments", "api", namespace)
        fake.seed("services", "api", namespace)
    fake.seed("pods", "api-0", "payments")
    fake.seed("pods", "shell", "scratch")
    yield url, fake
    fake.stop()


@pytest.fixture
def envlabel_url(tmp_path: Path, fake_cluster: tuple[str, FakeKubernetes]) -> Iterator[str]:
    """The real Kubernetes scanner's view of the fake cluster (pods recorded too), in SQLite, served by the real
    API."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake_cluster[0])
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "sources": [
        {"name": "k8s", "type": "kubernetes", "kubeconfig": str(kubeconfig), "cluster": CLUSTER, "watch": False,
         "resources": [{"resource": "pods"}]}]})
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


def service_names(fake: FakeKubernetes, namespace: str) -> set[str]:
    return {name for (ns, name) in fake.objects[("", "v1", "services")] if ns == namespace}


def pod_names(fake: FakeKubernetes, namespace: str) -> set[str]:
    return {name for (ns, name) in fake.objects[("", "v1", "pods")] if ns == namespace}


def changes_sent(fake: FakeKubernetes) -> list[str]:
    """What reached the fake other than reads (discovery and gets are how the dynamic client starts)."""
    return [f"{r.method} {r.path}" for r in fake.requests if r.verb not in ("get", "list", "watch")]


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


# -- the default configuration: protect(cluster=...) without an ApiClient ------------------------------------
@pytest.fixture
def default_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                          fake_cluster: tuple[str, FakeKubernetes]) -> None:
    """The agent's ``load_kube_config()`` pointing the default configuration at the fake; every process-wide
    default the no-argument form touches is put back afterwards, so no other test sees a guard."""
    monkeypatch.setattr(k8s.ApiClient, "__init__", k8s.ApiClient.__init__)
    monkeypatch.setattr(k8s.ApiClient, "_envlabel_default_guard", None, raising=False)
    monkeypatch.setattr(k8s.ApiClient, "_default", None)
    monkeypatch.setattr(k8s.Configuration, "_default", None)
    kube_config.load_kube_config(config_file=str(write_kubeconfig(tmp_path / "agent-kubeconfig", fake_cluster[0])))


@pytest.mark.usefixtures("default_configuration")
def test_protect_without_an_api_client_guards_clients_built_with_the_default_configuration(
        fake_cluster: tuple[str, FakeKubernetes], envlabel_url: str) -> None:
    url, fake = fake_cluster
    protect(cluster=CLUSTER, client=Client(envlabel_url))
    fake.clear_requests()
    with pytest.raises(ActionDenied):
        k8s.CoreV1Api().delete_namespaced_service("api", "payments")
    with pytest.raises(ActionDenied):
        k8s.AppsV1Api().delete_namespaced_deployment("api", "payments")
    with pytest.raises(ActionDenied):
        k8s.ApiClient().rest_client.request("DELETE", f"{url}/api/v1/namespaces/payments/services/api")
    services = DynamicClient(k8s.ApiClient()).resources.get(api_version="v1", kind="Service")
    with pytest.raises(ActionDenied):
        services.delete(name="api", namespace="payments")
    with pytest.raises(Blocked):
        stream(k8s.CoreV1Api().connect_get_namespaced_pod_exec, "api-0", "payments", command=["sh"],
               stderr=True, stdin=False, stdout=True, tty=False)
    assert changes_sent(fake) == []
    assert "api" in service_names(fake, "payments")
    assert "api" in deployment_names(fake, "payments")
    k8s.AppsV1Api().delete_namespaced_deployment("api", "scratch")  # allowed in the sandbox, and sent
    assert "api" not in deployment_names(fake, "scratch")


@pytest.mark.usefixtures("default_configuration")
def test_protect_without_an_api_client_guards_the_registered_default_client(
        fake_cluster: tuple[str, FakeKubernetes], envlabel_url: str) -> None:
    url, fake = fake_cluster
    k8s.ApiClient.set_default(api_client(url))  # type: ignore[no-untyped-call]
    protect(cluster=CLUSTER, client=Client(envlabel_url))
    with pytest.raises(ActionDenied):
        k8s.CoreV1Api().delete_namespaced_service("api", "payments")
    assert "api" in service_names(fake, "payments")


@pytest.mark.usefixtures("default_configuration")
def test_protect_without_an_api_client_leaves_explicit_configurations_alone_and_can_be_replaced(
        fake_cluster: tuple[str, FakeKubernetes], envlabel_url: str) -> None:
    url, fake = fake_cluster
    protect(cluster=CLUSTER, client=Client(f"http://127.0.0.1:{free_port()}"))  # nothing answers there
    with pytest.raises(UnreachableError):
        k8s.AppsV1Api().delete_namespaced_deployment("api", "scratch")
    assert "api" in deployment_names(fake, "scratch")
    # a client with its own Configuration may be another cluster's: not touched (envlabel is never asked)
    k8s.AppsV1Api(api_client(url)).delete_namespaced_deployment("api", "scratch")
    assert "api" not in deployment_names(fake, "scratch")
    early = k8s.AppsV1Api()  # built under the unreachable guard
    protect(cluster=CLUSTER, client=Client(envlabel_url))  # replaces it, for clients already built too
    early.patch_namespaced_deployment("api", "payments-stg", {"metadata": {"labels": {"team": "x"}}})
    with pytest.raises(ActionDenied):
        k8s.AppsV1Api().delete_namespaced_deployment("api", "payments")
    assert "api" in deployment_names(fake, "payments")


# -- the REST client itself ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [
    "/api/v1/namespaces/payments/services/api",
    "/api/v1/namespaces/scratch/../payments/services/api",  # a sandbox namespace in the path, resolved away
    "/api/v1/namespaces/payments/%73ervices/api",  # percent-encoded, as the API server decodes it
])
def test_requests_through_the_rest_client_itself_are_checked(fake_cluster: tuple[str, FakeKubernetes],
                                                              envlabel_url: str, path: str) -> None:
    url, fake = fake_cluster
    api = api_client(url)
    protect(api, cluster=CLUSTER, client=Client(envlabel_url))
    fake.clear_requests()
    with pytest.raises(ActionDenied) as caught:
        api.rest_client.request("DELETE", url + path)
    assert caught.value.check["target"] == "k8s://prod-eu/payments/services/api"
    assert fake.requests == []
    assert "api" in service_names(fake, "payments")


def test_the_dynamic_client_is_checked_at_the_rest_client(fake_cluster: tuple[str, FakeKubernetes],
                                                          envlabel_url: str) -> None:
    url, fake = fake_cluster
    api = api_client(url)
    protect(api, cluster=CLUSTER, client=Client(envlabel_url))
    dynamic = DynamicClient(api)
    with pytest.raises(ActionDenied):
        dynamic.request("DELETE", "/api/v1/namespaces/payments/services/api")
    services = dynamic.resources.get(api_version="v1", kind="Service")
    with pytest.raises(ApprovalRequired):
        services.patch(name="api", namespace="payments", body={"metadata": {"labels": {"team": "x"}}},
                       content_type="application/merge-patch+json")
    assert changes_sent(fake) == []
    assert "api" in service_names(fake, "payments")


# -- kubernetes.stream: exec, attach, port-forward ----------------------------------------------------------
def open_stream(core: Any, subresource: str, name: str, namespace: str) -> Any:
    """Open exec / attach / port-forward into a pod the way the kubernetes documentation shows."""
    if subresource == "exec":
        return stream(core.connect_get_namespaced_pod_exec, name, namespace, command=["sh", "-c", "rm -rf /data"],
                      stderr=True, stdin=False, stdout=True, tty=False)
    if subresource == "exec-post":
        return stream(core.connect_post_namespaced_pod_exec, name, namespace, command=["sh"],
                      stderr=True, stdin=False, stdout=True, tty=False)
    if subresource == "attach":
        return stream(core.connect_get_namespaced_pod_attach, name, namespace, stderr=True, stdin=True, stdout=True,
                      tty=False, _preload_content=False)
    return portforward(core.connect_get_namespaced_pod_portforward, name, namespace, ports="5432")


@pytest.mark.parametrize(("subresource", "action"), [
    ("exec", "create pods/exec"), ("exec-post", "create pods/exec"), ("attach", "create pods/attach"),
    ("portforward", "create pods/portforward")])
def test_exec_attach_and_port_forward_into_production_are_refused_before_the_websocket_opens(
        fake_cluster: tuple[str, FakeKubernetes], envlabel_url: str, subresource: str, action: str) -> None:
    url, fake = fake_cluster
    api = api_client(url)
    protect(api, cluster=CLUSTER, client=Client(envlabel_url))
    fake.clear_requests()
    # refused whichever way the vocabulary classes it (create: approval; unrecognized: delete, denied)
    with pytest.raises(Blocked) as caught:
        open_stream(k8s.CoreV1Api(api), subresource, "api-0", "payments")
    assert caught.value.check["target"] == "k8s://prod-eu/payments/pods/api-0"
    assert caught.value.check["action"] == action
    assert caught.value.check["environment"] == "production"
    assert caught.value.check["decision"] != "allow"
    assert fake.requests == []  # no websocket handshake reached the API server
    assert "api-0" in pod_names(fake, "payments")
    # kubernetes.stream put the client's own transport back: an ordinary delete is still checked
    with pytest.raises(ActionDenied):
        k8s.CoreV1Api(api).delete_namespaced_service("api", "payments")
    assert "api" in service_names(fake, "payments")


@pytest.mark.parametrize("subresource", ["exec", "portforward"])
def test_exec_and_port_forward_in_a_sandbox_namespace_reach_the_api_server(
        fake_cluster: tuple[str, FakeKubernetes], envlabel_url: str, subresource: str) -> None:
    url, fake = fake_cluster
    api = api_client(url)
    protect(api, cluster=CLUSTER, client=Client(envlabel_url))
    fake.clear_requests()
    with pytest.raises(ApiException) as caught:  # allowed and sent: the fake refuses to open a stream
        open_stream(k8s.CoreV1Api(api), subresource, "shell", "scratch")
    assert "400" in str(caught.value)
    assert [(r.path, r.verb) for r in fake.requests] == [(f"/api/v1/namespaces/scratch/pods/shell/{subresource}",
                                                          "create")]
