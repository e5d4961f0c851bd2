"""Enforcement the agent cannot bypass: the real ``kubectl`` against the fake API server, which calls envlabel's
admission webhook over HTTPS as kube-apiserver does.

The fake cluster holds a production and a sandbox namespace with deployment ``api`` in each; the real scanner
records it as cluster ``prod-eu`` in SQLite; ``envlabel serve``'s app (BackgroundServer) answers on HTTPS with
a serving certificate from a throwaway CA; the ValidatingWebhookConfiguration is applied with the real kubectl,
its ``caBundle`` that CA. Then every write is decided by envlabel whatever the client: no hook or guard runs
in the agent here, which is the point of admission.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from envlabel.config import load_config
from envlabel.service.core.pipeline import run_source
from envlabel.service.daemon.server import BackgroundServer, Tls
from envlabel.service.demo.fakes.kubernetes_api import FakeKubernetes, start_fake_cluster, write_kubeconfig
from envlabel.store import open_store
from tests.helm_tool import tool
from tests.tls_files import TlsFiles, make_tls

CLUSTER = "prod-eu"
WEBHOOK = "admission.envlabel.io"
NAMESPACES = {"payments": "production", "scratch": "sandbox"}


@dataclass
class Estate:
    fake: FakeKubernetes
    server: BackgroundServer
    tls: TlsFiles
    kubeconfig: Path
    directory: Path

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The real kubectl, as the agent (the cluster admin: no exemption) would run it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "ENVLABEL_"))}
        return subprocess.run([str(tool("kubectl")), "--kubeconfig", str(self.kubeconfig), *args], env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    def deployments(self, namespace: str) -> set[str]:
        """What really exists in ``namespace``, read from the fake's own objects."""
        return {name for (ns, name) in self.fake.objects[("apps", "v1", "deployments")] if ns == namespace}

    def apply_webhook(self, failure_policy: str = "Fail", verb: str = "apply") -> None:
        """The ValidatingWebhookConfiguration for envlabel, applied with kubectl as an operator would (``replace``
        to change it: the fake serves strategic merge patches as merge patches, which replace lists)."""
        rules = [{"operations": ["CREATE", "UPDATE", "DELETE", "CONNECT"], "apiGroups": ["*"], "apiVersions": ["*"],
                  "resources": ["*", "pods/exec", "pods/attach", "pods/portforward"], "scope": "*"}]
        document = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                    "metadata": {"name": "envlabel"}, "webhooks": [{
                        "name": WEBHOOK, "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
                        "failurePolicy": failure_policy, "timeoutSeconds": 5, "rules": rules,
                        "namespaceSelector": {"matchExpressions": [
                            {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                             "values": ["kube-system", "envlabel"]}]},
                        "clientConfig": {"url": f"{self.server.url}/v1/admission/kubernetes/{CLUSTER}",
                                         "caBundle": self.tls.ca_bundle}}]}
        path = self.directory / "webhook.yaml"
        path.write_text(yaml.safe_dump(document))
        applied = self.kubectl(verb, "--validate=false", "-f", str(path))
        assert applied.returncode == 0, applied.stderr


@pytest.fixture
def estate(tmp_path: Path) -> Iterator[Estate]:
    url, fake = start_fake_cluster()
    with ExitStack() as stack:
        stack.callback(fake.stop)
        for namespace, environment in NAMESPACES.items():
            fake.seed("namespaces", namespace, labels={"environment": environment,
                                                       "kubernetes.io/metadata.name": namespace})
            fake.seed("deployments", "api", namespace, labels={"app": "api"})
        config_file = tmp_path / "envlabel.yaml"
        config_file.write_text(yaml.safe_dump({
            "store": f"sqlite:///{tmp_path / 'envlabel.db'}",
            "sources": [{"name": "k8s", "type": "kubernetes", "cluster": CLUSTER, "watch": False,
                         "kubeconfig": str(write_kubeconfig(tmp_path / "scanner-kubeconfig", url))}],
        }))
        config = load_config(config_file, environ={})
        store = open_store(config.store)
        assert run_source(config, store, config.sources[0]).complete
        tls = make_tls(tmp_path / "tls")
        server = stack.enter_context(BackgroundServer(config, store, tls=Tls(str(tls.cert), str(tls.key))))
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url, context="agent")
        built = Estate(fake, server, tls, kubeconfig, tmp_path)
        built.apply_webhook()
        yield built


def test_kubectl_delete_in_production_is_refused_by_admission_and_in_sandbox_it_goes_through(estate: Estate) -> None:
    listed = estate.kubectl("get", "validatingwebhookconfigurations", "-o", "name")
    assert listed.stdout.split() == ["validatingwebhookconfiguration.admissionregistration.k8s.io/envlabel"]

    refused = estate.kubectl("delete", "deployment", "api", "-n", "payments")
    assert refused.returncode != 0
    assert f'Error from server (Forbidden): admission webhook "{WEBHOOK}" denied the request: ' in refused.stderr
    assert "on k8s://prod-eu/payments/deployments/api is deny as production" in refused.stderr
    assert "environment=production on k8s:namespaces payments" in refused.stderr  # the evidence
    assert "by kubernetes-admin" in refused.stderr  # the principal, from the request's userInfo
    assert estate.deployments("payments") == {"api"}
    [(_, _, request, response)] = estate.fake.admission_calls
    assert (request["operation"], request["namespace"], request["name"]) == ("DELETE", "payments", "api")
    assert response is not None and response["allowed"] is False

    sandbox = estate.kubectl("delete", "deployment", "api", "-n", "scratch")
    assert sandbox.returncode == 0, sandbox.stderr
    assert 'deployment.apps "api" deleted' in sandbox.stdout
    assert estate.deployments("scratch") == set()
    assert estate.deployments("payments") == {"api"}


def test_a_server_side_dry_run_is_decided_and_nothing_is_deleted(estate: Estate) -> None:
    refused = estate.kubectl("delete", "deployment", "api", "-n", "payments", "--dry-run=server")
    assert refused.returncode != 0
    assert f'admission webhook "{WEBHOOK}" denied the request' in refused.stderr
    [(_, _, request, _)] = estate.fake.admission_calls
    assert request["dryRun"] is True
    assert estate.deployments("payments") == {"api"}
    admitted = estate.kubectl("delete", "deployment", "api", "-n", "scratch", "--dry-run=server")
    assert admitted.returncode == 0, admitted.stderr
    assert estate.deployments("scratch") == {"api"}  # a dry run deletes nothing


def test_with_envlabel_down_fail_refuses_and_ignore_admits(estate: Estate) -> None:
    estate.server.stop()
    refused = estate.kubectl("delete", "deployment", "api", "-n", "payments")
    assert refused.returncode != 0
    assert f'failed calling webhook "{WEBHOOK}"' in refused.stderr
    assert estate.deployments("payments") == {"api"}

    # the webhook configuration itself is never sent to a webhook (no lockout)
    estate.apply_webhook(failure_policy="Ignore", verb="replace")
    admitted = estate.kubectl("delete", "deployment", "api", "-n", "payments")
    assert admitted.returncode == 0, admitted.stderr
    assert estate.deployments("payments") == set()


def test_kubectl_exec_into_production_is_refused_and_envlabel_itself_is_exempt(estate: Estate) -> None:
    estate.fake.define("", "v1", "pods", "Pod")
    estate.fake.seed("pods", "api-0", "payments")
    refused = estate.kubectl("exec", "api-0", "-n", "payments", "--", "sh")
    assert refused.returncode != 0
    assert "denied the request: envlabel refused CONNECT of pods/exec api-0 in namespace payments" in refused.stderr
    # kubectl tries a websocket upgrade (GET), then SPDY (POST): each one is sent to the webhook and refused
    sent = {(r["operation"], r["subResource"], (a or {}).get("allowed")) for _, _, r, a in estate.fake.admission_calls}
    assert sent == {("CONNECT", "exec", False)}

    # the same user as envlabel's own service account (kubectl --as): always admitted, so it cannot lock itself out
    exempt = estate.kubectl("--as", "system:serviceaccount:envlabel:envlabel", "delete", "deployment", "api", "-n",
                            "payments", "--dry-run=server")
    assert exempt.returncode == 0, exempt.stderr
    assert estate.fake.admission_calls[-1][2]["userInfo"]["username"] == "system:serviceaccount:envlabel:envlabel"
    assert (estate.fake.admission_calls[-1][3] or {}).get("allowed") is True
    assert estate.deployments("payments") == {"api"}
