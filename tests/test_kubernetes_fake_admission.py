"""The fake API server's validating admission, against a stub webhook over real HTTPS.

The stub is the other side of the wire (a webhook), not envlabel: it records every AdmissionReview and answers
as it is told. The cluster is driven by the official ``kubernetes`` client; envlabel's own webhook is in
tests/test_admission_e2e.py.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiException

from envlabel.service.demo.fakes.kubernetes_api import FakeKubernetes, start_fake_cluster, write_kubeconfig
from tests.tls_files import TlsFiles, make_tls

Obj = dict[str, Any]
Answer = Callable[[Obj], Obj]


def refuse(request: Obj) -> Obj:
    return {"uid": request["uid"], "allowed": False, "status": {"code": 403, "message": "production: ask first"}}


def admit_all(request: Obj) -> Obj:
    return {"uid": request["uid"], "allowed": True}


@dataclass
class Webhook:
    """A stub HTTPS webhook: records the requests and answers with ``answer``; while ``hang`` is clear it
    never answers (a webhook that times out)."""

    answer: Answer = refuse
    reviews: list[Obj] = field(default_factory=list)
    hang: threading.Event | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/validate"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        hook = self.server.hook
        hook.reviews.append({"path": self.path, **review})
        if hook.hang is not None:
            hook.hang.wait()
            return
        data = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": hook.answer(review["request"])}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hook: Webhook, cert: TlsFiles) -> None:
        self.hook = hook
        super().__init__(("127.0.0.1", 0), _Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert.cert, cert.key)
        self.socket = context.wrap_socket(self.socket, server_side=True)


@dataclass
class Cluster:
    fake: FakeKubernetes
    api: kubernetes.client.ApiClient
    hook: Webhook
    cert: TlsFiles

    @property
    def apps(self) -> kubernetes.client.AppsV1Api:
        return kubernetes.client.AppsV1Api(self.api)

    def configure(self, *, url: str | None = None, ca_bundle: str | None = None, **webhook: Any) -> None:
        """Store one ValidatingWebhookConfiguration (as kubectl would create it) with one webhook."""
        rules = [{"operations": ["DELETE"], "apiGroups": ["apps"], "apiVersions": ["v1"],
                  "resources": ["deployments"], "scope": "Namespaced"}]
        hook = {"name": "guard.envlabel.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "clientConfig": {"url": url or self.hook.url, "caBundle": ca_bundle or self.cert.ca_bundle},
                "rules": rules, "namespaceSelector": {"matchLabels": {"environment": "production"}}, **webhook}
        body = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": "envlabel"}, "webhooks": [hook]}
        kubernetes.client.AdmissionregistrationV1Api(self.api).create_validating_webhook_configuration(body)

    def deployments(self, namespace: str) -> set[str]:
        return {name for (ns, name) in self.fake.objects[("apps", "v1", "deployments")] if ns == namespace}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    cert = make_tls(tmp_path / "tls", names=("localhost", "envlabel.envlabel.svc"))
    hook = Webhook()
    server = _Server(hook, cert)
    hook.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url, fake = start_fake_cluster()
    for namespace, environment in (("payments", "production"), ("scratch", "sandbox")):
        fake.seed("namespaces", namespace, labels={"environment": environment})
        fake.seed("deployments", "api", namespace, labels={"app": "api"})
    api = kubernetes.config.new_client_from_config(config_file=str(write_kubeconfig(tmp_path / "kubeconfig", url)))
    try:
        yield Cluster(fake, api, hook, cert)
    finally:
        if hook.hang is not None:
            hook.hang.set()
        api.close()
        fake.stop()
        server.shutdown()
        server.server_close()


def _refusal(call: Callable[[], Any]) -> tuple[int, Obj]:
    with pytest.raises(ApiException) as raised:
        call()
    return raised.value.status, json.loads(raised.value.body)


def test_a_refused_delete_is_answered_as_kube_apiserver_does_and_nothing_is_deleted(cluster: Cluster) -> None:
    cluster.configure()
    code, status = _refusal(lambda: cluster.apps.delete_namespaced_deployment("api", "payments"))
    assert code == 403
    assert (status["kind"], status["reason"]) == ("Status", "Forbidden")
    assert status["message"] == 'admission webhook "guard.envlabel.io" denied the request: production: ask first'
    assert cluster.deployments("payments") == {"api"}
    [review] = cluster.hook.reviews
    assert (review["path"], review["apiVersion"], review["kind"]) == ("/validate", "admission.k8s.io/v1",
                                                                      "AdmissionReview")
    request = review["request"]
    assert request["operation"] == "DELETE"
    assert request["resource"] == {"group": "apps", "version": "v1", "resource": "deployments"}
    assert request["kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert (request["namespace"], request["name"], request["dryRun"]) == ("payments", "api", False)
    assert request["object"] is None
    assert request["oldObject"]["metadata"]["labels"] == {"app": "api"}
    assert request["options"]["kind"] == "DeleteOptions"
    assert request["userInfo"]["username"] == "kubernetes-admin"


def test_only_matching_requests_are_sent(cluster: Cluster) -> None:
    cluster.configure()
    cluster.apps.delete_namespaced_deployment("api", "scratch")  # namespaceSelector: not production
    body = {"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
        "metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}
    cluster.apps.create_namespaced_deployment("payments", body)  # rules: DELETE only
    assert cluster.hook.reviews == []
    assert cluster.deployments("scratch") == set()
    assert cluster.deployments("payments") == {"api", "web"}


def test_object_selector_and_a_webhook_that_admits(cluster: Cluster) -> None:
    cluster.configure(objectSelector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["db"]}]})
    cluster.apps.delete_namespaced_deployment("api", "payments")  # app=api: not selected
    assert cluster.hook.reviews == []
    cluster.fake.seed("deployments", "db", "payments", labels={"app": "db"})
    cluster.hook.answer = admit_all
    cluster.apps.delete_namespaced_deployment("db", "payments")
    assert [r["request"]["name"] for r in cluster.hook.reviews] == ["db"]
    assert cluster.deployments("payments") == set()


def test_connect_subresources_are_sent_as_connect(cluster: Cluster) -> None:
    cluster.fake.define("", "v1", "pods", "Pod")
    cluster.fake.seed("pods", "api-0", "payments")
    rules = [{"operations": ["CONNECT"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/exec"]}]
    cluster.configure(rules=rules)
    core = kubernetes.client.CoreV1Api(cluster.api)
    code, status = _refusal(lambda: core.connect_post_namespaced_pod_exec("api-0", "payments", command=["sh"]))
    assert code == 403
    assert "denied the request: production: ask first" in status["message"]
    request = cluster.hook.reviews[0]["request"]
    assert (request["operation"], request["subResource"], request["kind"]["kind"]) == ("CONNECT", "exec",
                                                                                      "PodExecOptions")
    # "pods/exec" is not "pods/attach", and "*" matches no subresource
    cluster.fake.objects[("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations")].clear()
    cluster.configure(rules=[{**rules[0], "resources": ["*", "pods/exec"]}])
    code, status = _refusal(lambda: core.connect_post_namespaced_pod_attach("api-0", "payments"))
    assert (code, status["reason"]) == (400, "BadRequest")  # admitted: the fake then refuses to stream
    assert len(cluster.hook.reviews) == 1


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
def test_an_unreachable_webhook_fails_closed_or_is_ignored_as_configured(cluster: Cluster, policy: str) -> None:
    cluster.configure(url="https://127.0.0.1:9/validate", failurePolicy=policy)  # nothing listens on port 9
    if policy == "Ignore":
        cluster.apps.delete_namespaced_deployment("api", "payments")
        assert cluster.deployments("payments") == set()
        return
    code, status = _refusal(lambda: cluster.apps.delete_namespaced_deployment("api", "payments"))
    assert (code, status["reason"]) == (500, "InternalError")
    assert status["message"].startswith('Internal error occurred: failed calling webhook "guard.envlabel.io": '
                                        "failed to call webhook: ")
    assert cluster.deployments("payments") == {"api"}


def test_a_webhook_that_does_not_answer_in_time_fails_the_request(cluster: Cluster) -> None:
    cluster.hook.hang = threading.Event()
    cluster.configure(timeoutSeconds=1)
    code, status = _refusal(lambda: cluster.apps.delete_namespaced_deployment("api", "payments"))
    assert code == 500
    assert "context deadline exceeded" in status["message"]
    assert cluster.deployments("payments") == {"api"}


def test_the_ca_bundle_is_what_the_webhook_is_verified_against(cluster: Cluster, tmp_path: Path) -> None:
    other = make_tls(tmp_path / "other")  # the same names, another CA
    cluster.configure(ca_bundle=other.ca_bundle, failurePolicy="Fail")
    code, status = _refusal(lambda: cluster.apps.delete_namespaced_deployment("api", "payments"))
    assert code == 500
    assert "certificate verify failed" in status["message"]
    assert cluster.hook.reviews == []  # the TLS handshake failed: nothing was sent
    assert cluster.deployments("payments") == {"api"}


def test_a_service_reference_is_reached_at_the_address_the_test_gives(cluster: Cluster) -> None:
    cluster.fake.services["envlabel/envlabel"] = f"127.0.0.1:{cluster.hook.port}"
    service = {"namespace": "envlabel", "name": "envlabel", "path": "/v1/admission/kubernetes", "port": 443}
    cluster.configure(clientConfig={"service": service, "caBundle": cluster.cert.ca_bundle})
    code, _ = _refusal(lambda: cluster.apps.delete_namespaced_deployment("api", "payments"))
    assert code == 403
    assert cluster.hook.reviews[0]["path"] == "/v1/admission/kubernetes"


def test_dry_run_is_sent_as_such_and_nothing_is_stored(cluster: Cluster) -> None:
    cluster.configure()
    cluster.hook.answer = admit_all
    cluster.apps.delete_namespaced_deployment("api", "payments", dry_run="All")
    assert cluster.hook.reviews[0]["request"]["dryRun"] is True
    assert cluster.deployments("payments") == {"api"}


def test_the_user_comes_from_the_token_or_impersonation(cluster: Cluster, tmp_path: Path) -> None:
    cluster.configure()
    cluster.fake.users["agent-token"] = {"username": "agent", "groups": ["agents", "system:authenticated"]}
    url = cluster.api.configuration.host
    agent = kubernetes.config.new_client_from_config(
        config_file=str(write_kubeconfig(tmp_path / "agent", url, token="agent-token")))
    try:
        _refusal(lambda: kubernetes.client.AppsV1Api(agent).delete_namespaced_deployment("api", "payments"))
        agent.set_default_header("Impersonate-User", "system:serviceaccount:envlabel:envlabel")
        _refusal(lambda: kubernetes.client.AppsV1Api(agent).delete_namespaced_deployment("api", "payments"))
    finally:
        agent.close()
    users = [r["request"]["userInfo"] for r in cluster.hook.reviews]
    assert users == [{"username": "agent", "groups": ["agents", "system:authenticated"]},
                     {"username": "system:serviceaccount:envlabel:envlabel", "groups": ["system:authenticated"]}]


def test_a_configuration_the_fake_cannot_honour_is_refused(cluster: Cluster) -> None:
    code, status = _refusal(lambda: cluster.configure(matchConditions=[{"name": "x", "expression": "true"}]))
    assert (code, status["reason"]) == (422, "Invalid")
    assert "matchConditions" in status["message"]
    code, status = _refusal(lambda: cluster.configure(sideEffects="Some"))
    assert code == 422
