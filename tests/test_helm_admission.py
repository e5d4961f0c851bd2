"""The chart's admission webhook with a real ``helm``: off by default; on, a ValidatingWebhookConfiguration whose
caBundle is the CA that signed the serving certificate (or cert-manager's, injected), a TLS API port the
probes, Service and NetworkPolicy follow, no lockout of kube-system or the release's namespace, and RBAC that
stays read-only. Manifests are checked against the Kubernetes schemas; cert-manager's by hand (CRDs)."""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from envlabel.config import Admission, Config, config_from_dict
from envlabel.service.core.admission import Request, exemption
from tests.conftest import free_port
from tests.kubernetes_cluster import fake_cluster
from tests.test_daemon import wait_until
from tests.test_helm import CHART, CRDS, KUBERNETES_VERSIONS, READ_VERBS, helm, one, render, render_error, secret_value

ON: dict[str, Any] = {"admission": {"enabled": True}}
CERT_MANAGER: dict[str, Any] = {"admission": {
    "enabled": True, "certManager": {"enabled": True, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}}
SELF_SIGNED: dict[str, Any] = {"admission": {"enabled": True, "certManager": {"enabled": True}}}
TUNED: dict[str, Any] = {
    "admission": {"enabled": True, "failurePolicy": "Ignore", "timeoutSeconds": 5, "port": 9443,
                  "excludeNamespaces": ["monitoring", "kube-system"],
                  "namespaceSelector": {"matchLabels": {"envlabel.io/admission": "on"}},
                  "objectSelector": {"matchExpressions": [{"key": "skip-envlabel", "operator": "DoesNotExist"}]},
                  "networkPolicyFrom": [{"ipBlock": {"cidr": "10.0.0.0/28"}}]},
    "config": {"sources": [{"name": "aws", "type": "aws"},
                           {"name": "gke-prod", "type": "kubernetes", "in_cluster": True, "cluster": "prod-1"}]},
    "networkPolicy": {"ingressFrom": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "agents"}}}]},
    "serviceMonitor": {"enabled": True},
}
CERT_MANAGER_CRDS = {("cert-manager.io/v1", "Certificate"), ("cert-manager.io/v1", "Issuer")}
VALUES = {"on": ON, "cert-manager": CERT_MANAGER, "self-signed": SELF_SIGNED, "tuned": TUNED}


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("helm-admission")
    return {"off": render(tmp)} | {name: render(tmp, values) for name, values in VALUES.items()}


def webhook(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (hook,) = one(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert isinstance(hook, dict)
    return hook


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert isinstance(found, dict)
    return found


# -- lint and schemas ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(VALUES))
def test_helm_lint_strict_with_admission(name: str, tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text(yaml.safe_dump(VALUES[name]))
    done = helm("lint", "--strict", str(CHART), "-f", str(tmp_path / "v.yaml"), tmp=tmp_path)
    assert done.returncode == 0 and "0 chart(s) failed" in done.stdout, done.stdout + done.stderr


def test_admission_manifests_match_the_kubernetes_schemas(renders: dict[str, list[dict[str, Any]]]) -> None:
    for name in VALUES:
        for doc in renders[name]:
            if (doc["apiVersion"], doc["kind"]) in CRDS | CERT_MANAGER_CRDS:
                continue
            for version in KUBERNETES_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)
    assert {d["kind"] for d in renders["on"]} - {d["kind"] for d in renders["off"]} == {
        "ValidatingWebhookConfiguration"}  # and a second Secret, the TLS one
    assert not [d for d in renders["off"] if d["kind"] == "ValidatingWebhookConfiguration"]
    assert len([d for d in renders["on"] if d["kind"] == "Secret"]) == 2


def test_values_schema_and_chart_refuse_unsafe_admission_values(tmp_path: Path) -> None:
    assert "failurePolicy" in render_error(tmp_path, {"admission": {"enabled": True, "failurePolicy": "Open"}})
    assert "timeoutSeconds" in render_error(tmp_path, {"admission": {"enabled": True, "timeoutSeconds": 60}})
    assert "port" in render_error(tmp_path, {"admission": {"enabled": True, "port": 443}})  # the pod is non-root
    assert "admission.cluster" in render_error(tmp_path, {"admission": {"enabled": True},
                                                          "config": {"sources": [{"name": "a", "type": "aws"}]}})
    # a narrowed NetworkPolicy would silently drop the API server's calls (then failurePolicy refuses every write)
    assert "admission.networkPolicyFrom" in render_error(tmp_path, {
        "admission": {"enabled": True}, "networkPolicy": {"ingressFrom": [{"podSelector": {}}]}})


# -- the webhook -----------------------------------------------------------------------------------------
def test_webhook_sends_writes_and_connects_to_envlabels_admission_path(
        renders: dict[str, list[dict[str, Any]]]) -> None:
    hook = webhook(renders["on"])
    service = one(renders["on"], "Service")
    assert hook["clientConfig"]["service"] == {"name": service["metadata"]["name"], "namespace": "envlabel",
                                               "path": "/v1/admission/kubernetes/in-cluster", "port": 8443}
    assert hook["rules"] == [
        {"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": ["*"], "apiVersions": ["*"],
         "resources": ["*"], "scope": "*"},
        {"operations": ["CONNECT"], "apiGroups": [""], "apiVersions": ["v1"],
         "resources": ["pods/exec", "pods/attach", "pods/portforward"], "scope": "Namespaced"}]
    assert hook["admissionReviewVersions"] == ["v1"]
    assert (hook["failurePolicy"], hook["timeoutSeconds"], hook["matchPolicy"]) == ("Fail", 10, "Equivalent")
    assert hook["sideEffects"] in ("None", "NoneOnDryRun")
    assert "objectSelector" not in hook
    # the Service port the webhook names is the pod's TLS port
    (port,) = service["spec"]["ports"]
    assert port == {"name": "https", "port": 8443, "targetPort": "https", "protocol": "TCP"}


def test_webhook_never_sees_its_own_namespace_or_the_clusters(renders: dict[str, list[dict[str, Any]]]) -> None:
    (exclusion,) = webhook(renders["on"])["namespaceSelector"]["matchExpressions"]
    assert exclusion == {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                         "values": ["kube-system", "kube-node-lease", "envlabel"]}
    tuned = webhook(renders["tuned"])
    # the user's selector narrows further; the chart's exclusion stays first and cannot be dropped
    assert tuned["namespaceSelector"]["matchLabels"] == {"envlabel.io/admission": "on"}
    assert tuned["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "kube-system", "kube-node-lease", "envlabel", "monitoring"]
    assert tuned["objectSelector"] == TUNED["admission"]["objectSelector"]
    assert (tuned["failurePolicy"], tuned["timeoutSeconds"]) == ("Ignore", 5)
    assert tuned["clientConfig"]["service"]["path"] == "/v1/admission/kubernetes/prod-1"  # the source's cluster
    assert tuned["clientConfig"]["service"]["port"] == 9443


def rendered_config(docs: list[dict[str, Any]]) -> Config:
    data = yaml.safe_load(one(docs, "ConfigMap")["data"]["envlabel.yaml"])
    return config_from_dict({**data, "store": "sqlite:///unused.db"})


def user_request(username: str) -> Request:
    return Request(uid="u", operation="DELETE", resource="deployments", group="apps", subresource="",
                   namespace="payments", name="api", username=username, groups=("system:serviceaccounts",),
                   dry_run=False, labels={})


def test_the_charts_own_service_account_is_exempt_whatever_the_release_is_called(
        renders: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    """envlabel's own default names system:serviceaccount:NS:envlabel; the release "rel" runs as rel-envlabel, and
    the chart puts that name in the rendered config, beside the rest of envlabel's defaults."""
    docs = renders["on"]
    account = one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    assert account == "rel-envlabel"
    config = rendered_config(docs)
    own = f"system:serviceaccount:envlabel:{account}"
    defaults = Admission().exempt_usernames
    assert config.admission.exempt_usernames == [
        own if u == "system:serviceaccount:{namespace}:envlabel" else u for u in defaults]
    assert exemption(rendered_config(renders["off"]), user_request(own)) == ""  # envlabel's own default misses it
    assert exemption(config, user_request(own)) != ""
    assert exemption(config, user_request("system:serviceaccount:envlabel:other")) == ""
    # a service account named in the values, and a list the user wrote, are followed as given
    named = render(tmp_path, {**ON, "serviceAccount": {"name": "guard"}})
    assert rendered_config(named).admission.exempt_usernames[0] == "system:serviceaccount:envlabel:guard"
    mine = render(tmp_path, {**ON, "config": {"admission": {"exempt_usernames": ["system:apiserver"]},
                                              "sources": [{"name": "in-cluster", "type": "kubernetes",
                                                           "in_cluster": True}]}})
    assert rendered_config(mine).admission.exempt_usernames == ["system:apiserver"]


# -- TLS ------------------------------------------------------------------------------------------------
def test_ca_bundle_is_the_ca_that_signed_the_serving_certificate(renders: dict[str, list[dict[str, Any]]]) -> None:
    docs = renders["on"]
    hook = webhook(docs)
    secret = next(d for d in docs if d["kind"] == "Secret" and d["type"] == "kubernetes.io/tls")
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    assert base64.b64decode(secret["data"]["ca.crt"]) == base64.b64decode(hook["clientConfig"]["caBundle"])
    serving = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert serving.issuer == ca.subject and serving != ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    serving.verify_directly_issued_by(ca)  # raises if the signature or the issuer does not match
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) >= {"rel-envlabel.envlabel.svc",
                                                             "rel-envlabel.envlabel.svc.cluster.local"}
    now = datetime.datetime.now(datetime.UTC)
    assert serving.not_valid_before_utc <= now < serving.not_valid_after_utc
    # the private key in the Secret is the serving certificate's
    private = load_pem_private_key(base64.b64decode(secret["data"]["tls.key"]), password=None)
    assert private.public_key().public_numbers() == serving.public_key().public_numbers()  # type: ignore[union-attr]
    # and the pod reads that Secret
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    tls = next(v for v in volumes if v["name"] == "tls")
    assert tls["secret"]["secretName"] == secret["metadata"]["name"]


@pytest.mark.parametrize("name", ["cert-manager", "self-signed"])
def test_cert_manager_issues_the_certificate_and_injects_its_ca(
        renders: dict[str, list[dict[str, Any]]], name: str) -> None:
    docs = renders[name]
    configuration = one(docs, "ValidatingWebhookConfiguration")
    certificate = one(docs, "Certificate")
    assert configuration["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"envlabel/{certificate['metadata']['name']}"}
    assert "caBundle" not in webhook(docs)["clientConfig"]
    assert not [d for d in docs if d["kind"] == "Secret" and d.get("type") == "kubernetes.io/tls"]
    spec = certificate["spec"]
    assert "rel-envlabel.envlabel.svc" in spec["dnsNames"]
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert next(v for v in volumes if v["name"] == "tls")["secret"]["secretName"] == spec["secretName"]
    issuers = [d for d in docs if d["kind"] == "Issuer"]
    if name == "cert-manager":
        assert spec["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
        assert not issuers
    else:
        (issuer,) = issuers
        assert issuer["spec"] == {"selfSigned": {}}
        assert spec["issuerRef"] == {"name": issuer["metadata"]["name"], "kind": "Issuer",
                                     "group": "cert-manager.io"}


# -- the pod and its neighbours ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["on", "cert-manager", "tuned"])
def test_the_api_port_serves_tls_and_probes_follow(renders: dict[str, list[dict[str, Any]]], name: str) -> None:
    docs = renders[name]
    port = VALUES[name]["admission"].get("port", 8443)
    found = container(docs)
    args = found["args"]
    assert args[args.index("--port") + 1] == str(port)
    assert args[args.index("--tls-cert") + 1] == "/tls/tls.crt"
    assert args[args.index("--tls-key") + 1] == "/tls/tls.key"
    assert found["ports"] == [{"name": "https", "containerPort": port, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert found[probe]["httpGet"]["port"] == "https" and found[probe]["httpGet"]["scheme"] == "HTTPS"
    tls = next(m for m in found["volumeMounts"] if m["name"] == "tls")
    assert tls == {"name": "tls", "mountPath": "/tls", "readOnly": True}
    ingress = one(docs, "NetworkPolicy")["spec"]["ingress"]
    assert [rule["ports"] for rule in ingress] == [[{"port": "https", "protocol": "TCP"}]]


def test_a_narrowed_network_policy_still_admits_the_api_server(renders: dict[str, list[dict[str, Any]]]) -> None:
    (rule,) = one(renders["tuned"], "NetworkPolicy")["spec"]["ingress"]
    assert rule["from"] == TUNED["networkPolicy"]["ingressFrom"] + TUNED["admission"]["networkPolicyFrom"]
    (endpoint,) = one(renders["tuned"], "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == "https" and endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"]["key"] == "ca.crt"
    assert endpoint["tlsConfig"]["serverName"] == "rel-envlabel.envlabel.svc"


def test_rbac_stays_read_only_with_admission(renders: dict[str, list[dict[str, Any]]]) -> None:
    for name in VALUES:
        roles = [d for d in renders[name] if d["kind"] in ("Role", "ClusterRole")]
        assert [d["rules"] for d in roles] == [
            d["rules"] for d in renders["off"] if d["kind"] in ("Role", "ClusterRole")]
        for role in roles:
            for rule in role["rules"]:
                assert set(rule["verbs"]) <= READ_VERBS, (name, rule)


# -- the chart's certificate and path, served by the real `envlabel serve` ---------------------------------
def review(namespace: str, uid: str) -> dict[str, Any]:
    """kube-apiserver's AdmissionReview for ``kubectl delete deployment api -n NAMESPACE``."""
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": "api", "namespace": namespace, "operation": "DELETE",
        "userInfo": {"username": "agent@example.com", "groups": ["system:authenticated"]},
        "object": None, "oldObject": {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "metadata": {"name": "api", "namespace": namespace}},
        "dryRun": False, "options": {"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions"}}}


def test_serve_answers_the_webhook_over_the_charts_tls_as_the_api_server_calls_it(
        renders: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    docs = renders["on"]
    hook = webhook(docs)
    secret = next(d for d in docs if d["kind"] == "Secret" and d["type"] == "kubernetes.io/tls")
    for key in ("tls.crt", "tls.key"):
        (tmp_path / key).write_bytes(base64.b64decode(secret["data"][key]))
    (tmp_path / "ca.crt").write_bytes(base64.b64decode(hook["clientConfig"]["caBundle"]))
    with fake_cluster(tmp_path) as cluster:
        cluster.fake.seed("namespaces", "payments-prod", labels={"environment": "production"})
        cluster.fake.seed("namespaces", "scratch", labels={"environment": "sandbox"})
        for namespace in ("payments-prod", "scratch"):
            cluster.fake.seed("deployments", "api", namespace, labels={"app": "api"})
        # the chart's envlabel.yaml, its in-cluster source pointed at the fake cluster (same name: the CLUSTER)
        config = yaml.safe_load(one(docs, "ConfigMap")["data"]["envlabel.yaml"])
        (source,) = config["sources"]
        source.pop("in_cluster")
        config["sources"] = [source | {"kubeconfig": str(cluster.kubeconfig), "watch": False}]
        config["store"] = f"sqlite:///{tmp_path / 'envlabel.db'}"
        (tmp_path / "envlabel.yaml").write_text(yaml.safe_dump(config))
        args = container(docs)["args"]
        port = free_port()
        serve = ["serve", "--config", str(tmp_path / "envlabel.yaml"), "--port", str(port), "--shutdown-timeout",
                 "3", "--tls-cert", str(tmp_path / args[args.index("--tls-cert") + 1].removeprefix("/tls/")),
                 "--tls-key", str(tmp_path / args[args.index("--tls-key") + 1].removeprefix("/tls/"))]
        opaque = [d for d in docs if d["kind"] != "Secret" or d["type"] == "Opaque"]
        # the chart's token list, as the pod reads it; the API server sends no token on the admission path
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENVLABEL_")} | {
            "ENVLABEL_API__TOKENS": secret_value(opaque, "api-tokens")}
        reader = secret_value(opaque, "reader-token")
        log = (tmp_path / "serve.log").open("wb")
        process = subprocess.Popen([str(Path(sys.executable).parent / "envlabel"), *serve], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        # the API server checks the certificate against caBundle for the Service's DNS name
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        service = hook["clientConfig"]["service"]
        host = f"{service['name']}.{service['namespace']}.svc"
        try:
            def call(method: str, path: str, body: dict[str, Any] | None = None,
                     token: str | None = None) -> tuple[int, Any]:
                connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
                connection.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30),
                                                      server_hostname=host)
                try:
                    headers = {"Content-Type": "application/json", "Host": host}
                    if token:
                        headers["Authorization"] = f"Bearer {token}"
                    connection.request(method, path, body=json.dumps(body) if body else None, headers=headers)
                    answer = connection.getresponse()
                    return answer.status, json.loads(answer.read())
                finally:
                    connection.close()

            def scanned() -> bool:
                if process.poll() is not None:
                    raise AssertionError((tmp_path / "serve.log").read_text())
                try:
                    _, label = call("GET", "/v1/label?target=k8s://in-cluster/scratch/deployments/api", token=reader)
                except ConnectionRefusedError:  # not listening yet; a certificate error fails the test at once
                    return False
                return bool(label.get("environment") == "sandbox")

            wait_until(scanned, "serve to listen over TLS and scan the fake cluster")
            status, refused = call("POST", service["path"], review("payments-prod", "uid-prod"))
            assert status == 200 and refused["kind"] == "AdmissionReview"
            assert refused["response"]["uid"] == "uid-prod" and refused["response"]["allowed"] is False
            assert "production" in refused["response"]["status"]["message"]
            status, admitted = call("POST", service["path"], review("scratch", "uid-sandbox"))
            assert status == 200 and admitted["response"] == admitted["response"] | {"uid": "uid-sandbox",
                                                                                    "allowed": True}
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            log.close()
