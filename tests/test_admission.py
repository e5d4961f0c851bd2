"""The Kubernetes admission webhook: AdmissionReviews POSTed over real HTTPS (a CA made here) to the real server,
decided from a store filled by scanning the fake Kubernetes API server with the real scanner."""

from __future__ import annotations

import re
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from envlabel.config import Config, config_from_dict
from envlabel.discovery.kubernetes import KubernetesScanner
from envlabel.errors import EnvlabelError
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.service.cli import main
from envlabel.service.core.admission import review
from envlabel.service.core.approvals import approve
from envlabel.service.core.authority import Authority
from envlabel.service.core.decision_log import DirectDecisionLog
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.service.daemon.server import BackgroundServer, Tls
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.api_estate import READER_TOKEN, TOKENS
from tests.kubernetes_cluster import FakeCluster, fake_cluster
from tests.tls_files import TlsFiles, make_tls

CLUSTER = "prod-eu"
PROD_NS, SANDBOX_NS = "production-namespace", "sandbox"
PATH = f"/v1/admission/kubernetes/{CLUSTER}"


@dataclass
class Estate:
    cluster: FakeCluster
    store: Store
    tls: TlsFiles
    tmp: Path

    def config(self, **admission: Any) -> Config:
        return config_from_dict({
            "store": f"sqlite:///{self.tmp / 'unused.db'}",
            "approvers": {"production": ["sre-oncall"]},
            "api": {"tokens": TOKENS},
            "admission": {"namespace": "envlabel", "break_glass_groups": ["oncall-breakglass"], **admission},
            "sources": [{"type": "kubernetes", "name": CLUSTER, "kubeconfig": str(self.cluster.kubeconfig)}],
        })


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    tmp = tmp_path_factory.mktemp("admission")
    with fake_cluster(tmp) as cluster:
        fake = cluster.fake
        fake.define("", "v1", "pods", "Pod")
        fake.seed("namespaces", PROD_NS, labels={"environment": "production"})
        fake.seed("namespaces", SANDBOX_NS, labels={"environment": "sandbox"})
        fake.seed("namespaces", "kube-system")
        fake.seed("namespaces", "envlabel", labels={"environment": "production"})
        fake.seed("deployments", "api", PROD_NS)
        fake.seed("deployments", "api", SANDBOX_NS)
        fake.seed("deployments", "coredns", "kube-system")
        fake.seed("pods", "api-0", PROD_NS)
        store = open_store(f"sqlite:///{tmp / 'envlabel.db'}")
        estate = Estate(cluster, store, make_tls(tmp / "tls"), tmp)
        config = estate.config()
        started = datetime.now(UTC)
        result = KubernetesScanner(config.sources[0]).scan()  # type: ignore[arg-type]
        assert result.complete
        commit_scan(store, Taxonomy.from_config(config), result, started)
        yield estate


@pytest.fixture(scope="module")
def webhook(estate: Estate) -> Iterator[httpx.Client]:
    """The API over HTTPS with tokens configured, as the chart serves it; the client trusts only the test CA."""
    tls = Tls(str(estate.tls.cert), str(estate.tls.key))
    with BackgroundServer(estate.config(), estate.store, tls=tls) as server, \
            httpx.Client(base_url=server.url, verify=trusting(estate.tls)) as client:
        assert server.url.startswith("https://")
        yield client


def trusting(tls: TlsFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls.ca))


def admission_review(operation: str, resource: str, name: str, namespace: str = PROD_NS, *, group: str = "",
                     sub: str = "", user: str = "agent@example.com",
                     groups: tuple[str, ...] = ("system:authenticated",), dry_run: bool = False,
                     obj: dict[str, Any] | None = None) -> dict[str, Any]:
    """An AdmissionReview as kube-apiserver sends it."""
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()), "kind": {"group": group, "version": "v1", "kind": "Deployment"},
        "resource": {"group": group, "version": "v1", "resource": resource},
        "requestResource": {"group": group, "version": "v1", "resource": resource},
        "name": name, "namespace": namespace, "operation": operation,
        "userInfo": {"username": user, "uid": "u-1", "groups": list(groups)},
        "object": obj, "oldObject": None, "dryRun": dry_run, "options": None,
    }
    if sub:
        request["subResource"] = sub
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def answer_of(client: httpx.Client, review: dict[str, Any], path: str = PATH, **kwargs: Any) -> dict[str, Any]:
    response = client.post(path, json=review, **kwargs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert (body["apiVersion"], body["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    assert body["response"]["uid"] == review["request"]["uid"]
    return body["response"]  # type: ignore[no-any-return]


def refused(answer: dict[str, Any]) -> str:
    assert answer["allowed"] is False, answer
    assert answer["status"]["code"] == 403 and answer["status"]["reason"] == "Forbidden"
    return answer["status"]["message"]  # type: ignore[no-any-return]


# -- decisions -------------------------------------------------------------------------------------
def test_delete_in_a_production_namespace_is_refused_with_environment_and_evidence(webhook: httpx.Client,
                                                                                    estate: Estate) -> None:
    answer = answer_of(webhook, admission_review("DELETE", "deployments", "api", group="apps"))
    message = refused(answer)
    assert answer["auditAnnotations"] == {"decision": "deny"}
    assert f"k8s://{CLUSTER}/{PROD_NS}/deployments/api" in message and "deny as production" in message
    assert "environment=production" in message  # the namespace label that decided it, quoted as evidence
    assert "agent@example.com" in message and "envlabel override set" in message
    assert estate.cluster.fake.find(estate.cluster.fake.kind("deployments"), PROD_NS, "api")  # still there


def test_the_same_delete_in_a_sandbox_namespace_is_admitted(webhook: httpx.Client) -> None:
    answer = answer_of(webhook, admission_review("DELETE", "deployments", "api", SANDBOX_NS, group="apps"))
    assert answer["allowed"] is True and "status" not in answer
    assert answer["auditAnnotations"] == {"decision": "allow"}


def test_update_and_exec_in_production_need_approval_and_say_whom_to_ask(webhook: httpx.Client) -> None:
    update = refused(answer_of(webhook, admission_review("UPDATE", "deployments", "api", group="apps")))
    assert "require_approval as production" in update and "ask sre-oncall to approve" in update
    for sub in ("exec", "attach", "portforward"):
        answer = answer_of(webhook, admission_review("CONNECT", "pods", "api-0", sub=sub))
        message = refused(answer)
        assert f"create pods/{sub} (modify)" in message and "sre-oncall" in message
        assert answer["auditAnnotations"] == {"decision": "require_approval"}


def test_an_eviction_is_a_delete(webhook: httpx.Client) -> None:
    message = refused(answer_of(webhook, admission_review("CREATE", "pods", "api-0", sub="eviction")))
    assert "create pods/eviction (delete)" in message


def test_create_of_a_new_object_is_decided_by_its_namespace(webhook: httpx.Client) -> None:
    sandbox = answer_of(webhook, admission_review("CREATE", "deployments", "new", SANDBOX_NS, group="apps",
                                                  obj={"metadata": {"name": "new"}}))
    assert sandbox["allowed"] is True
    message = refused(answer_of(webhook, admission_review("CREATE", "deployments", "new", group="apps")))
    assert "never seen by envlabel; decided by the strictest label inside" in message
    # its own labels can only make it stricter than the namespace
    labeled = {"metadata": {"name": "new", "labels": {"env": "prod"}}}
    message = refused(answer_of(webhook, admission_review("CREATE", "deployments", "new", SANDBOX_NS, group="apps",
                                                          obj=labeled)))
    assert "its own labels say production" in message
    generated = answer_of(webhook, admission_review("CREATE", "pods", "", SANDBOX_NS))  # generateName: no name yet
    assert generated["allowed"] is True


def test_a_never_seen_object_deleted_in_a_sandbox_namespace_is_decided_as_production(webhook: httpx.Client) -> None:
    message = refused(answer_of(webhook, admission_review("DELETE", "deployments", "ghost", SANDBOX_NS,
                                                          group="apps")))
    assert "decided as production" in message


def test_dry_run_is_decided_but_not_counted(webhook: httpx.Client) -> None:
    answer = answer_of(webhook, admission_review("DELETE", "deployments", "api", group="apps", dry_run=True))
    refused(answer)
    assert answer["warnings"] == ["envlabel: dry run decided deny; not counted as an action"]
    allowed = answer_of(webhook, admission_review("DELETE", "deployments", "api", SANDBOX_NS, group="apps",
                                                  dry_run=True))
    assert allowed["allowed"] is True and "dry run" in allowed["warnings"][0]


def test_an_approved_request_is_admitted_once_for_the_same_user(webhook: httpx.Client, estate: Estate) -> None:
    """What the refusal says to do works: have the named approval approved, send the same request again as the
    same user; it is admitted once, and the next one needs a new approval."""
    user = "deployer@example.com"

    def update(who: str = user) -> dict[str, Any]:
        return admission_review("UPDATE", "deployments", "api", group="apps", user=who)

    message = refused(answer_of(webhook, update()))
    found = re.search(r"apr-[0-9a-f]{12}", message)
    assert found is not None, message
    approval = found.group(0)
    assert f"have approval {approval} approved, then send the same request again as {user}" in message
    assert "break-glass" not in message  # one way to go ahead, not two
    approve(Authority(Query(estate.config(), estate.store)), approval, "sre-oncall")
    # another user's identical request is not covered by it
    assert approval not in refused(answer_of(webhook, update("someone-else@example.com")))
    admitted = answer_of(webhook, update())
    assert admitted["allowed"] is True and admitted["auditAnnotations"] == {"decision": "allow"}
    again = refused(answer_of(webhook, update()))  # used once: the next identical one is refused again
    assert approval not in again and re.search(r"apr-[0-9a-f]{12}", again)


def test_a_dry_run_refusal_says_no_approval_was_opened(webhook: httpx.Client) -> None:
    message = refused(answer_of(webhook, admission_review("UPDATE", "deployments", "api", group="apps",
                                                          user="planner@example.com", dry_run=True)))
    assert "require_approval as production" in message
    assert "dry run, so no approval request was opened" in message and "sre-oncall can approve it" in message
    assert "apr-" not in message and "named above" not in message


def test_admission_decisions_are_in_the_decision_log_with_their_dry_run(estate: Estate) -> None:
    """The webhook's decisions are logged like any check's (interface admission); a dry run is marked one.
    Exempt requests are not checked, so not logged."""
    authority = Authority(Query(estate.config(), estate.store), DirectDecisionLog(estate.store))
    user = "auditor@example.com"
    for operation, dry_run in (("DELETE", True), ("DELETE", False), ("UPDATE", True)):
        answer = review(authority, admission_review(operation, "deployments", "api", group="apps", user=user,
                                                    dry_run=dry_run), CLUSTER)["response"]
        assert answer["allowed"] is False
    review(authority, admission_review("DELETE", "deployments", "api", group="apps",
                                       user="system:kube-controller-manager"), CLUSTER)
    rows = [d.row for d in reversed(estate.store.decisions(principal=user))]
    assert [(r.interface, r.action, r.decision, r.dry_run) for r in rows] == [
        ("admission", "delete deployments.apps", "deny", True),
        ("admission", "delete deployments.apps", "deny", False),
        ("admission", "update deployments.apps", "require_approval", True),
    ]
    assert {r.target for r in rows} == {f"k8s://{CLUSTER}/{PROD_NS}/deployments/api"}
    assert rows[2].approval_id is None  # a dry run opens no approval
    assert not estate.store.decisions(principal="system:kube-controller-manager")


# -- no lockout ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("user", "groups"), [
    ("system:serviceaccount:envlabel:envlabel", ()),  # envlabel itself, in its own namespace
    ("system:serviceaccount:kube-system:generic-garbage-collector", ("system:serviceaccounts",)),
    ("system:kube-controller-manager", ()),
    ("system:node:node-1", ("system:nodes", "system:authenticated")),
    ("alice@example.com", ("oncall-breakglass", "system:authenticated")),
])
def test_exempt_principals_always_pass(webhook: httpx.Client, user: str, groups: tuple[str, ...]) -> None:
    answer = answer_of(webhook, admission_review("DELETE", "deployments", "api", group="apps", user=user,
                                                 groups=groups))
    assert answer["allowed"] is True and answer["auditAnnotations"] == {"decision": "exempt"}


def test_cluster_admins_are_not_exempt(webhook: httpx.Client) -> None:
    """system:masters is what an admin kubeconfig carries: exactly what an agent may hold."""
    refused(answer_of(webhook, admission_review("DELETE", "deployments", "api", group="apps", user="kubernetes-admin",
                                                groups=("system:masters", "system:authenticated"))))
    refused(answer_of(webhook, admission_review("DELETE", "deployments", "api", group="apps",
                                                user="system:serviceaccount:other:envlabel")))


def test_kube_system_and_its_own_namespace_are_never_blocked(webhook: httpx.Client) -> None:
    for namespace in ("kube-system", "envlabel"):  # envlabel's own namespace is labeled production here
        answer = answer_of(webhook, admission_review("DELETE", "deployments", "coredns", namespace, group="apps"))
        assert answer["allowed"] is True
    # the Namespace object itself is decided by the check
    refused(answer_of(webhook, admission_review("DELETE", "namespaces", "envlabel", "envlabel")))


# -- the URL, the body, the listener ---------------------------------------------------------------
def test_the_cluster_may_be_left_out_with_one_kubernetes_source(webhook: httpx.Client) -> None:
    refused(answer_of(webhook, admission_review("DELETE", "deployments", "api", group="apps"),
                      path="/v1/admission/kubernetes"))
    assert answer_of(webhook, admission_review("DELETE", "deployments", "api", SANDBOX_NS, group="apps"),
                     path="/v1/admission/kubernetes")["allowed"] is True


def test_an_unknown_cluster_is_refused_saying_how_to_fix_it(webhook: httpx.Client) -> None:
    message = refused(answer_of(webhook, admission_review("DELETE", "deployments", "api", SANDBOX_NS, group="apps"),
                                path="/v1/admission/kubernetes/elsewhere"))
    assert "cluster 'elsewhere'" in message and f"configured: {CLUSTER}" in message


@pytest.mark.parametrize(("body", "says"), [
    (b"not json", "not JSON"),
    (b"[]", "not a JSON object"),
    (b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}',
     "admissionReviewVersions"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "request is missing"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "PATCH"}}',
     "request.operation"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "DELETE",'
     b' "resource": {"resource": "pods"}}}', "request.uid is missing"),
])
def test_a_malformed_review_is_a_400_saying_what_to_send(webhook: httpx.Client, body: bytes, says: str) -> None:
    response = webhook.post(PATH, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "malformed admission review" and says in response.json()["message"]


def test_plain_http_needs_a_token_and_require_token_asks_for_one_over_tls(estate: Estate) -> None:
    review = admission_review("DELETE", "deployments", "api", group="apps")
    with BackgroundServer(estate.config(), estate.store) as plain:
        assert httpx.post(plain.url + PATH, json=review).status_code == 401
    tls = Tls(str(estate.tls.cert), str(estate.tls.key))
    with BackgroundServer(estate.config(require_token=True), estate.store, tls=tls) as server, \
            httpx.Client(base_url=server.url, verify=trusting(estate.tls)) as client:
        assert client.post(PATH, json=review).status_code == 401
        assert client.get("/v1/label", params={"target": CLUSTER}).status_code == 401  # TLS opens nothing else
        refused(answer_of(client, review, headers={"authorization": f"Bearer {READER_TOKEN}"}))


def test_tls_opens_only_the_admission_path(webhook: httpx.Client) -> None:
    assert webhook.post("/v1/check", json={"target": f"k8s://{CLUSTER}", "action": "get"}).status_code == 401


def test_a_bad_certificate_pair_is_one_clear_error(estate: Estate, tmp_path: Path) -> None:
    other = make_tls(tmp_path / "other")
    with pytest.raises(EnvlabelError, match="give a PEM certificate"):
        BackgroundServer(estate.config(), estate.store, tls=Tls(str(estate.tls.cert), str(other.key)))
    result = CliRunner().invoke(main, ["serve", "--tls-cert", str(estate.tls.cert)])
    assert result.exit_code == 2 and "give both --tls-cert and --tls-key" in result.output


# -- the attack, end to end --------------------------------------------------------------------------
def test_the_api_server_refuses_a_production_delete_and_the_deployment_survives(webhook: httpx.Client,
                                                                               estate: Estate) -> None:
    """The fake API server holds a ValidatingWebhookConfiguration pointing at envlabel over HTTPS (caBundle: the
    test CA); a cluster admin's delete through the official client is refused with envlabel's reason."""
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config import new_client_from_config

    api_client = new_client_from_config(config_file=str(estate.cluster.kubeconfig))
    hooks = k8s.AdmissionregistrationV1Api(api_client)
    configuration: Any = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "envlabel"},
        "webhooks": [{"name": "envlabel.envlabel.dev", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                      "failurePolicy": "Fail", "timeoutSeconds": 5,
                      "clientConfig": {"url": f"{webhook.base_url}{PATH}".rstrip("/"),
                                       "caBundle": estate.tls.ca_bundle},
                      "rules": [{"operations": ["DELETE"], "apiGroups": ["apps"], "apiVersions": ["v1"],
                                 "resources": ["deployments"]}]}]}
    hooks.create_validating_webhook_configuration(configuration)
    apps = k8s.AppsV1Api(api_client)
    try:
        with pytest.raises(ApiException) as refusal:
            apps.delete_namespaced_deployment("api", PROD_NS)
        assert refusal.value.status == 403
        assert "envlabel refused DELETE of deployments api" in str(refusal.value.body)
        assert apps.read_namespaced_deployment("api", PROD_NS).to_dict()["metadata"]["name"] == "api"  # it still exists
    finally:
        hooks.delete_validating_webhook_configuration("envlabel")
