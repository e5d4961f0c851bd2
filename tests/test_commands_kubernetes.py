"""The kubectl and helm readers of envlabel.commands: argv -> the operations the check decides.

Tables of command lines against a kubeconfig and manifests written in tmp_path, then the real kubectl binary run
against the fake API server over HTTP: every mutating request it really sends, read as the Kubernetes guard reads
it, must be covered by an operation the reader found (same target, or a container's contents; a class at least
as strict), so the reader's reading of kubectl's flags is held against kubectl itself.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from envlabel.actions import classify
from envlabel.commands import CommandContext, Operation, Unparsed, plan_command, unknown
from envlabel.commands import helm as helm_reader
from envlabel.commands import kubectl as kubectl_reader
from envlabel.commands.k8s import api_request, resource_of
from envlabel.commands.kubeconfig import server_key
from envlabel.service.demo.fakes.kubernetes_api import FakeKubernetes, start_fake_cluster, write_kubeconfig
from tests.helm_tool import tool
from tests.kubernetes_cluster import seed_payments

PROD = "https://10.0.0.1:6443"
KUBECONFIG = {
    "apiVersion": "v1", "kind": "Config", "current-context": "staging",
    "clusters": [{"name": "prod-cluster", "cluster": {"server": PROD}},
                 {"name": "staging-cluster", "cluster": {"server": "https://staging.k8s.example"}},
                 {"name": "lab", "cluster": {"server": "https://lab.example:6443"}}],
    "contexts": [{"name": "prod", "context": {"cluster": "prod-cluster", "user": "u", "namespace": "payments"}},
                 {"name": "staging", "context": {"cluster": "staging-cluster", "user": "u"}},
                 # named like the sandbox, pointing at production's API server
                 {"name": "sandbox", "context": {"cluster": "prod-cluster", "user": "u"}},
                 {"name": "lab", "context": {"cluster": "lab", "user": "u", "namespace": "experiments"}}],
    "users": [{"name": "u", "user": {"token": "x"}}],
}
MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: payments}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Service, metadata: {name: api}}
- {apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: deny-all}}
- {apiVersion: v1, kind: Namespace, metadata: {name: scratch}}
"""


@pytest.fixture
def ctx(tmp_path: Path) -> CommandContext:
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(json.dumps(KUBECONFIG))
    (tmp_path / "app.yaml").write_text(MANIFESTS)
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "cm.yml").write_text("kind: ConfigMap\nmetadata: {name: cfg}\n")
    (tmp_path / "dir" / "notes.txt").write_text("not a manifest")
    (tmp_path / "dir" / "sub" / "secret.json").write_text('{"kind": "Secret", "metadata": {"name": "tls"}}')
    (tmp_path / "gen.yaml").write_text("kind: Job\nmetadata: {generateName: migrate-}\n")
    (tmp_path / "crd.yaml").write_text("kind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\n")
    return CommandContext(environ={"HOME": str(tmp_path)}, cwd=str(tmp_path),
                          clusters_by_context={"staging": "staging-eu", "sandbox": "sandbox-eu"},
                          clusters_by_server={PROD: "prod-eu"})


def ops(reader: object, line: str, context: CommandContext) -> list[tuple[str, str, bool]]:
    found = reader.read(shlex.split(line), context)  # type: ignore[attr-defined]
    assert all(isinstance(f, Operation) for f in found), found
    return [(f.target, f.action, f.contents) for f in found]


def unparsed(reader: object, argv: list[str], context: CommandContext) -> Unparsed:
    found = reader.read(argv, context)  # type: ignore[attr-defined]
    assert len(found) == 1 and isinstance(found[0], Unparsed), found
    return found[0]


S = "k8s://staging-eu"
P = "k8s://prod-eu"


KUBECTL = [
    ("kubectl delete deploy api", [(f"{S}/default/deployments/api", "delete", False)]),
    ("/usr/local/bin/kubectl delete deployment.apps/api svc/api -n payments",
     [(f"{S}/payments/deployments/api", "delete", False), (f"{S}/payments/services/api", "delete", False)]),
    ("kubectl delete deploy,svc api worker -npayments",
     [(f"{S}/payments/deployments/api", "delete", False), (f"{S}/payments/deployments/worker", "delete", False),
      (f"{S}/payments/services/api", "delete", False), (f"{S}/payments/services/worker", "delete", False)]),
    ("kubectl --namespace=payments delete pods -l app=api", [(f"{S}/namespaces/payments", "delete", True)]),
    ("kubectl delete pods --all -A", [(S, "delete", True)]),
    ("kubectl delete ns payments", [(f"{S}/namespaces/payments", "delete", True)]),
    ("kubectl delete nodes -l pool=spot", [(S, "delete", True)]),
    ("kubectl delete crd widgets.example.com",
     [(f"{S}/customresourcedefinitions/widgets.example.com", "delete", False), (S, "delete", True)]),
    ("kubectl delete pod api-0 --grace-period 0 --force --wait=false", [(f"{S}/default/pods/api-0", "delete", False)]),
    ("kubectl delete pod api-0 --dry-run=server", []),
    ("kubectl delete pod api-0 --dry-run=none", [(f"{S}/default/pods/api-0", "delete", False)]),
    ("kubectl --context prod delete certificates.cert-manager.io/web",
     [(f"{P}/payments/certificates/web", "delete", False)]),
    ("kubectl -n payments get pods -o wide", []),
    ("kubectl get secrets -n payments", [(f"{S}/namespaces/payments", "list secrets", True)]),
    ("kubectl get secret db-password -n payments -o jsonpath={.data}",
     [(f"{S}/payments/secrets/db-password", "get secrets", False)]),
    ("kubectl describe secret db-password", []),
    ("kubectl logs -f api-0 -c app --tail 10", []),
    ("kubectl apply -f app.yaml --server-side --force-conflicts",
     [(f"{S}/payments/deployments/api", "patch", False), (f"{S}/default/services/api", "patch", False),
      (f"{S}/default/networkpolicies/deny-all", "patch", False), (f"{S}/namespaces/scratch", "patch", False)]),
    ("kubectl apply -f dir", [(f"{S}/default/configmaps/cfg", "patch", False)]),
    ("kubectl apply -f dir/cm.yml,crd.yaml",
     [(f"{S}/default/configmaps/cfg", "patch", False),
      (f"{S}/customresourcedefinitions/widgets.example.com", "patch", False)]),
    ("kubectl apply -R -f dir", [(f"{S}/default/configmaps/cfg", "patch", False),
                                 (f"{S}/default/secrets/tls", "patch", False)]),
    ("kubectl apply --prune -l app=api -f dir", [(f"{S}/default/configmaps/cfg", "patch", False),
                                                 (f"{S}/namespaces/default", "delete", True)]),
    ("kubectl create -f gen.yaml -n jobs", [(f"{S}/namespaces/jobs", "create", False)]),
    ("kubectl create namespace team-a", [(S, "create", False)]),
    ("kubectl create secret generic creds --from-literal=a=b -n payments", [(f"{S}/namespaces/payments", "create",
                                                                             False)]),
    ("kubectl create token builder -n ci", [(f"{S}/ci/serviceaccounts/builder", "create serviceaccounts/token",
                                             False)]),
    ("kubectl replace --force -f crd.yaml", [(f"{S}/customresourcedefinitions/widgets.example.com", "delete", False),
                                             (S, "create", False)]),
    ("kubectl patch deploy api -p '{\"spec\":{}}' -n payments", [(f"{S}/payments/deployments/api", "patch", False)]),
    ("kubectl label ns payments environment=sandbox --overwrite", [(f"{S}/namespaces/payments", "patch", False)]),
    ("kubectl annotate pods --all -n payments owner-", [(f"{S}/namespaces/payments", "patch", True)]),
    ("kubectl set image deploy/api app=nginx:1.27 -n payments", [(f"{S}/payments/deployments/api", "patch", False)]),
    ("kubectl set serviceaccount deployment api builder", [(f"{S}/default/deployments/api", "patch", False)]),
    ("kubectl scale --replicas=0 statefulset/db -n payments", [(f"{S}/payments/statefulsets/db", "patch", False)]),
    ("kubectl rollout restart deploy -n payments", [(f"{S}/namespaces/payments", "patch", True)]),
    ("kubectl rollout undo deploy/api --to-revision 2", [(f"{S}/default/deployments/api", "patch", False)]),
    ("kubectl rollout status deploy/api", []),
    ("kubectl cordon node-1", [(f"{S}/nodes/node-1", "patch", False)]),
    ("kubectl drain node-1 --ignore-daemonsets --delete-emptydir-data",
     [(f"{S}/nodes/node-1", "patch", False), (S, "create pods/eviction", True)]),
    ("kubectl taint nodes node-1 dedicated=db:NoSchedule", [(f"{S}/nodes/node-1", "patch", False)]),
    ("kubectl taint nodes node-1 dedicated=db:NoExecute",
     [(f"{S}/nodes/node-1", "patch", False), (S, "create pods/eviction", True)]),
    ("kubectl exec -it api-0 -c app -n payments -- sh -c 'rm -rf /data'",
     [(f"{S}/payments/pods/api-0", "create pods/exec", False)]),
    ("kubectl exec deploy/api -- env", [(f"{S}/default/deployments/api", "create pods/exec", False)]),
    ("kubectl attach api-0 -i", [(f"{S}/default/pods/api-0", "create pods/attach", False)]),
    ("kubectl port-forward svc/db 5432:5432 -n payments",
     [(f"{S}/payments/services/db", "create pods/portforward", False)]),
    ("kubectl cp payments/api-0:/var/dump.sql ./dump.sql -c app",
     [(f"{S}/payments/pods/api-0", "create pods/exec", False)]),
    ("kubectl debug node/node-1 -it --image=busybox",
     [(f"{S}/nodes/node-1", "create pods/exec", False), (f"{S}/namespaces/default", "create", False)]),
    ("kubectl run tmp --image=busybox --restart=Never -- sleep 1", [(f"{S}/namespaces/default", "create", False)]),
    ("kubectl expose deploy api --port 80", [(f"{S}/namespaces/default", "create", False)]),
    ("kubectl certificate approve csr-1", [(f"{S}/certificatesigningrequests/csr-1",
                                           "update certificatesigningrequests/approval", False)]),
    ("kubectl delete --raw /api/v1/namespaces/payments/pods", [(f"{S}/namespaces/payments", "deletecollection",
                                                                True)]),
    ("kubectl get --raw /api/v1/namespaces/payments/secrets", [(f"{S}/namespaces/payments", "list secrets", True)]),
    ("kubectl delete all api", [(f"{S}/default/{r}/api", "delete", False) for r in (
        "pods", "services", "deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs",
        "replicationcontrollers", "horizontalpodautoscalers")]),
    ("kubectl config use-context prod", []),
    ("kubectl auth can-i delete pods", []),
    ("kubectl version --client", []),
    ("kubectl", []),
    ("oc delete deploy api", [(f"{S}/default/deployments/api", "delete", False)]),
    ("kubectl --context lab delete deploy api", [("k8s://lab/experiments/deployments/api", "delete", False)]),
]


@pytest.mark.parametrize(("line", "expected"), KUBECTL)
def test_kubectl_commands_read_as_operations(ctx: CommandContext, line: str,
                                             expected: list[tuple[str, str, bool]]) -> None:
    assert ops(kubectl_reader, line, ctx) == expected


@pytest.mark.parametrize(("line", "reason", "scope"), [
    ("kubectl --weird delete deploy api", "--weird is not one envlabel knows", S),
    ("kubectl delete deploy api --unknown-flag", "--unknown-flag is not one envlabel knows", S),
    ("kubectl delete pods", "names no object", S),
    ("kubectl delete -f -", "standard input", S),
    ("kubectl apply -f https://example.com/app.yaml", "fetched from the network", S),
    ("kubectl apply -f missing.yaml", "cannot read", S),
    ("kubectl apply -f dir/notes.txt", "not a Kubernetes manifest", S),
    ("kubectl delete -f gen.yaml", "generateName", S),
    ("kubectl proxy --port 8001", "kubectl proxy", S),
    ("kubectl neat get deploy", "not a kubectl command envlabel knows", S),
    ("kubectl --context nope delete deploy api", "context 'nope' is not in", ""),
    ("kubectl --kubeconfig /nonexistent delete deploy api", "cannot read the kubeconfig", ""),
    ("kubectl delete pod x -A", "--all-namespaces", S),
    ("kubectl create frobnicator x", "not a create envlabel knows", S),
])
def test_what_kubectl_cannot_read_is_unparsed_with_its_cluster(ctx: CommandContext, line: str, reason: str,
                                                               scope: str) -> None:
    found = unparsed(kubectl_reader, shlex.split(line), ctx)
    assert reason in found.reason and found.tool == "kubectl"
    assert found.scope == scope


def test_apply_of_an_object_never_seen_is_decided_where_it_would_be_created(ctx: CommandContext) -> None:
    found = kubectl_reader.read(["kubectl", "apply", "-f", "app.yaml"], ctx)
    assert [(f.target, f.fallback) for f in found if isinstance(f, Operation)] == [
        (f"{S}/payments/deployments/api", f"{S}/namespaces/payments"),
        (f"{S}/default/services/api", f"{S}/namespaces/default"),
        (f"{S}/default/networkpolicies/deny-all", f"{S}/namespaces/default"), (f"{S}/namespaces/scratch", S)]
    # a delete or a patch of an object envlabel never saw is decided as production, as the Kubernetes guard decides it
    assert all(not f.fallback for f in kubectl_reader.read(["kubectl", "delete", "-f", "app.yaml"], ctx)
               if isinstance(f, Operation))


def test_the_api_server_decides_the_cluster_before_a_context_name(ctx: CommandContext) -> None:
    """A context named like the sandbox that points at production's server is production."""
    assert ops(kubectl_reader, "kubectl --context sandbox delete deploy api -n payments", ctx) == [
        (f"{P}/payments/deployments/api", "delete", False)]
    # the context's namespace is the default; -n wins over it
    assert ops(kubectl_reader, "kubectl --context prod delete deploy api", ctx)[0][0] == f"{P}/payments/deployments/api"
    # --server and --cluster choose the server as kubectl does
    assert ops(kubectl_reader, f"kubectl --server {PROD} delete deploy api", ctx)[0][0].startswith(P)
    assert ops(kubectl_reader, "kubectl --cluster prod-cluster delete deploy api", ctx)[0][0].startswith(P)


def test_kubeconfig_files_merge_as_kubectl_merges_them(ctx: CommandContext, tmp_path: Path) -> None:
    first = tmp_path / "first.yaml"
    first.write_text(json.dumps({"contexts": [{"name": "x", "context": {"cluster": "prod-cluster"}}]}))
    second = tmp_path / "second.yaml"
    second.write_text(json.dumps({**KUBECONFIG, "current-context": "x"}))
    merged = CommandContext({"KUBECONFIG": f"{first}:{tmp_path / 'missing'}:{second}"}, str(tmp_path),
                            clusters_by_server=ctx.clusters_by_server)
    # current-context from the second file (the first sets none), context x from the first, its server from the second
    assert ops(kubectl_reader, "kubectl delete pod p", merged) == [(f"{P}/default/pods/p", "delete", False)]


def test_no_kubeconfig_at_all_is_unparsed_unless_in_a_cluster(tmp_path: Path) -> None:
    bare = CommandContext({"HOME": str(tmp_path)}, str(tmp_path), clusters_by_server={PROD: "prod-eu"})
    assert "no kubeconfig" in unparsed(kubectl_reader, ["kubectl", "delete", "pod", "p"], bare).reason
    pod = CommandContext({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}, "/",
                         clusters_by_server={PROD: "prod-eu"})
    assert ops(kubectl_reader, "kubectl delete pod p", pod) == [(f"{P}/default/pods/p", "delete", False)]


@pytest.mark.parametrize(("a", "b"), [
    ("https://K8S.example.", "k8s.example:443"), ("http://127.1:8001/base/", "localhost:8001/base"),
    ("https://[::1]:6443", "https://0x7f000001:6443"), ("https://[::ffff:10.0.0.1]:6443", PROD),
])
def test_server_addresses_compare_across_spellings(a: str, b: str) -> None:
    assert server_key(a) == server_key(b if "://" in b else "http://" + b) or server_key(a) == server_key(b)


def test_standard_input_the_line_shows_is_read(ctx: CommandContext) -> None:
    heredoc = CommandContext(ctx.environ, ctx.cwd, ctx.clusters_by_context, ctx.clusters_by_server,
                             stdin="kind: Deployment\nmetadata:\n  name: api\n  namespace: payments\n"
                                   f"spec:\n  image: {unknown('$IMAGE')}\n")
    assert ops(kubectl_reader, "kubectl apply -f -", heredoc) == [(f"{S}/payments/deployments/api", "patch", False)]
    for text in (f"kind: Deployment\nmetadata: {{name: {unknown('$NAME')}}}\n",
                 f"kind: Deployment\nmetadata:\n  name: api\n  {unknown('$MORE')}: x\n"):
        hidden = CommandContext(ctx.environ, ctx.cwd, ctx.clusters_by_context, ctx.clusters_by_server, stdin=text)
        assert "computed when the command runs" in unparsed(kubectl_reader, ["kubectl", "apply", "-f", "-"],
                                                            hidden).reason


def test_a_word_computed_at_run_time_widens_to_everything_it_could_name(ctx: CommandContext) -> None:
    name, ns = unknown("$NAME"), unknown("$NS")
    assert ops(kubectl_reader, shlex.join(["kubectl", "delete", "deploy", name, "-n", "payments"]), ctx) == [
        (f"{S}/namespaces/payments", "delete", True)]
    assert ops(kubectl_reader, shlex.join(["kubectl", "delete", "deploy", "api", "-n", ns]), ctx) == [
        (S, "delete", True)]
    assert ops(kubectl_reader, shlex.join(["kubectl", "delete", unknown("$KIND"), "api"]), ctx) == [
        (S, "delete", True)]
    assert ops(kubectl_reader, shlex.join(["kubectl", "get", unknown("$KIND"), "x"]), ctx) == [
        (f"{S}/default/secrets/x", "get secrets", False)]
    # a dry run whose value is computed may be none: not a dry run
    assert ops(kubectl_reader, shlex.join(["kubectl", "delete", "pod", "p", f"--dry-run={unknown('$D')}"]), ctx)
    assert unparsed(kubectl_reader, ["kubectl", "--context", unknown("$C"), "delete", "pod", "p"], ctx).scope == ""
    assert "KUBECONFIG" in unparsed(kubectl_reader, ["kubectl", "delete", "pod", "p"], CommandContext(
        {"KUBECONFIG": unknown("$KC")}, ctx.cwd)).reason


def test_simple_kustomizations_are_read_and_others_are_not(ctx: CommandContext, tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "deploy.yaml").write_text("kind: Deployment\nmetadata: {name: api, namespace: other}\n")
    (base / "kustomization.yaml").write_text("resources: [deploy.yaml]\n")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "ns.yaml").write_text("kind: Namespace\nmetadata: {name: team}\n")
    (overlay / "kustomization.yaml").write_text("namespace: team\nresources: [../base, ns.yaml]\n"
                                                "commonLabels: {app: api}\n")
    assert ops(kubectl_reader, "kubectl apply -k overlay", ctx) == [(f"{S}/team/deployments/api", "patch", False),
                                                                  (f"{S}/namespaces/team", "patch", False)]
    (overlay / "kustomization.yaml").write_text("namePrefix: prod-\nresources: [../base]\n")
    assert "namePrefix" in unparsed(kubectl_reader, ["kubectl", "delete", "-k", "overlay"], ctx).reason
    (overlay / "kustomization.yaml").write_text("resources: [github.com/org/repo//base]\n")
    assert "not a local file" in unparsed(kubectl_reader, ["kubectl", "apply", "-k", "overlay"], ctx).reason


def test_changes_to_the_kubeconfig_are_reported() -> None:
    assert kubectl_reader.changes_kubeconfig(["kubectl", "config", "use-context", "prod"])
    assert kubectl_reader.changes_kubeconfig(["kubectl", "config", "set-context", "--current", "--namespace=x"])
    assert not kubectl_reader.changes_kubeconfig(["kubectl", "config", "current-context"])
    assert not kubectl_reader.changes_kubeconfig(["kubectl", "get", "pods"])


@pytest.mark.parametrize(("kind", "resource"), [
    ("deploy", "deployments"), ("Deployment", "deployments"), ("deployments.v1.apps", "deployments"),
    ("NetworkPolicy", "networkpolicies"), ("Ingress", "ingresses"), ("StorageClass", "storageclasses"),
    ("hpa", "horizontalpodautoscalers"), ("certificate.cert-manager.io", "certificates"), ("Gateway", "gateways"),
])
def test_resource_names_are_the_plurals_of_envlabel_targets(kind: str, resource: str) -> None:
    assert resource_of(kind) == resource


H = "k8s://staging-eu/namespaces"


HELM = [
    ("helm uninstall api -n payments", [(f"{H}/payments", "delete", True)]),
    ("helm delete api worker --namespace payments --keep-history", [(f"{H}/payments", "delete", True)]),
    ("helm upgrade --install api ./chart -f values.yaml --set image.tag=2 -n payments",
     [(f"{H}/payments", "update", True)]),
    ("helm upgrade api ./chart --force -n payments", [(f"{H}/payments", "delete", True)]),
    ("helm install api ./chart --wait --create-namespace -n team", [(f"{H}/team", "create", True)]),
    ("helm install ./chart --generate-name", [(f"{H}/default", "create", True)]),
    ("helm rollback api 3 -n payments", [(f"{H}/payments", "update", True)]),
    ("helm --kube-context prod uninstall api", [("k8s://prod-eu/namespaces/payments", "delete", True)]),
    ("helm uninstall api --dry-run", []),
    ("helm list -A", []), ("helm status api", []), ("helm template x ./chart", []), ("helm repo update", []),
    ("helm get values api -n payments", []), ("helm diff upgrade api ./chart", []),
]


@pytest.mark.parametrize(("line", "expected"), HELM)
def test_helm_commands_act_on_the_release_namespace(ctx: CommandContext, line: str,
                                                    expected: list[tuple[str, str, bool]]) -> None:
    assert ops(helm_reader, line, ctx) == expected


def test_helm_environment_and_what_it_cannot_read(ctx: CommandContext) -> None:
    env = CommandContext({**ctx.environ, "HELM_NAMESPACE": "payments", "HELM_KUBECONTEXT": "prod"}, ctx.cwd,
                         ctx.clusters_by_context, ctx.clusters_by_server)
    assert ops(helm_reader, "helm uninstall api", env) == [("k8s://prod-eu/namespaces/payments", "delete", True)]
    assert "needs RELEASE CHART" in unparsed(helm_reader, ["helm", "upgrade", "api"], ctx).reason
    found = unparsed(helm_reader, ["helm", "secrets", "upgrade", "api", "."], ctx)
    assert "not a helm command envlabel knows" in found.reason and found.scope == S
    assert ops(helm_reader, shlex.join(["helm", "uninstall", "api", "-n", unknown("$NS")]), ctx) == [
        (S, "delete", True)]


# -- the real kubectl ---------------------------------------------------------------------------------------------

@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeKubernetes, CommandContext]]:
    url, fake = start_fake_cluster()
    fake.define("", "v1", "pods", "Pod")
    seed_payments(fake)
    fake.seed("pods", "api-0", "payments", labels={"app": "api"})
    fake.seed("pods", "api-1", "payments", labels={"app": "api"})
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url)
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg2, namespace: payments}\n"
                                      "data: {a: b}\n")
    try:
        yield fake, CommandContext({"KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}, str(tmp_path),
                                   clusters_by_server={url: "prod-eu"})
    finally:
        fake.stop()


def _covers(op: Operation, target: str, action: str) -> bool:
    """True when ``op`` decides the request (target, action): the same target, or a container of it with its
    contents, and a class at least as strict."""
    order = ["read", "create", "modify", "delete"]
    if order.index(classify(op.action).action_class) < order.index(classify(action).action_class):
        return False
    return op.target == target or (op.contents and _inside(target, op.target)) or (
        bool(op.fallback) and _inside(target, op.fallback))


def _inside(target: str, container: str) -> bool:
    """``target`` is ``container`` or below it (a cluster, or a namespace)."""
    cluster = container.split("/")[2]
    if target == container or container == f"k8s://{cluster}":
        return target.startswith(container)
    namespace = container.rsplit("/", 1)[1]
    return container.startswith(f"k8s://{cluster}/namespaces/") and target.startswith(f"k8s://{cluster}/{namespace}/")


@pytest.mark.parametrize("line", [
    "delete deploy api -n payments",
    "-n payments delete deployments/api services/api",
    "delete configmaps,services -l app=api -n payments",
    "delete pods --all -n payments",
    "delete ns scratch",
    "apply -f cm.yaml --validate=false",
    "create -f cm.yaml --validate=false",
    "create namespace team-a",
    "create configmap cfg3 -n payments --from-literal=a=b",
    "run tmp -n payments --image=busybox --restart=Never",
    "label deploy worker -n scratch tier=web --overwrite",
    "annotate cm api -n payments owner=me",
    "rollout restart deploy/worker -n scratch",
    "cordon node-1",
    "drain node-1 --ignore-daemonsets --force",
    "get secret db-password -n payments",
    "exec api-0 -n payments -- ls",
])
def test_the_reader_covers_every_request_the_real_kubectl_sends(cluster: tuple[FakeKubernetes, CommandContext],
                                                                line: str) -> None:
    fake, context = cluster
    argv = ["kubectl", *shlex.split(line)]
    found = kubectl_reader.read(argv, context)
    assert found and all(isinstance(f, Operation) for f in found), found
    fake.requests.clear()
    subprocess.run([str(tool("kubectl")), *argv[1:]], env={"PATH": "/usr/bin:/bin", **context.environ},
                   cwd=context.cwd, capture_output=True, timeout=120, check=False)
    sent = [(r.method, r.path) for r in fake.requests]
    effects = [api_request("prod-eu", method, path) for method, path in sent]
    checked = [e for e in effects if e is not None]
    assert checked, f"kubectl sent nothing the guard checks: {sent}"
    for effect in checked:
        assert any(_covers(op, effect.target, effect.action) for op in found if isinstance(op, Operation)), (
            effect, found)


# -- the attack: a context named like the sandbox, pointing at production ------------------------------------------

@pytest.fixture
def two_clusters(tmp_path: Path) -> Iterator[dict[str, tuple[str, FakeKubernetes]]]:
    """prod-eu and sandbox-eu, each with namespace payments (production / sandbox by label) and deployment api."""
    started = {}
    try:
        for cluster, environment in (("prod-eu", "production"), ("sandbox-eu", "sandbox")):
            url, fake = start_fake_cluster()
            started[cluster] = (url, fake)
            fake.seed("namespaces", "payments", labels={"environment": environment})
            fake.seed("deployments", "api", "payments")
        yield started
    finally:
        for _, fake in started.values():
            fake.stop()


def test_a_context_named_sandbox_that_reaches_production_is_denied(
        tmp_path: Path, two_clusters: dict[str, tuple[str, FakeKubernetes]]) -> None:
    from envlabel.client import Client
    from envlabel.commands import decide_command, plan_command
    from envlabel.config import config_from_dict
    from envlabel.service.core.pipeline import run_source
    from envlabel.service.daemon.server import BackgroundServer
    from envlabel.store import open_store

    prod_url, prod = two_clusters["prod-eu"]
    sandbox_url, sandbox = two_clusters["sandbox-eu"]
    sources = [{"name": name, "type": "kubernetes", "cluster": name, "watch": False,
                "kubeconfig": str(write_kubeconfig(tmp_path / f"{name}.kubeconfig", url))}
               for name, (url, _) in two_clusters.items()]
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "sources": sources})
    store = open_store(config.store)
    assert all(run_source(config, store, source).complete for source in config.sources)
    # the agent's own kubeconfig: "sandbox" is production's API server under the sandbox's name
    agent = tmp_path / "agent.kubeconfig"
    agent.write_text(json.dumps({
        "current-context": "sandbox",
        "clusters": [{"name": "p", "cluster": {"server": prod_url}}, {"name": "s", "cluster": {"server": sandbox_url}}],
        "contexts": [{"name": "sandbox", "context": {"cluster": "p"}}, {"name": "lab", "context": {"cluster": "s"}}],
        "users": [{"name": "u", "user": {"token": "x"}}]}))
    context = CommandContext({"KUBECONFIG": str(agent), "HOME": str(tmp_path)}, str(tmp_path),
                             clusters_by_context={"sandbox": "sandbox-eu"},
                             clusters_by_server={prod_url: "prod-eu", sandbox_url: "sandbox-eu"})
    kubectl = str(tool("kubectl"))
    with BackgroundServer(config, store) as server:
        client = Client(server.url)

        def gate(line: str) -> dict[str, object]:
            """What a pre-tool hook does: decide the line, run it only when allowed."""
            answer = decide_command(plan_command(line, context), lambda op: client.check(op.target, op.action,
                                                                                            op.contents))
            if answer["decision"] == "allow":
                subprocess.run([kubectl, *shlex.split(line)[1:]], env={"PATH": "/usr/bin:/bin", **context.environ},
                               capture_output=True, timeout=120, check=True)
            return answer

        spoofed = gate("kubectl delete deployment api -n payments")
        assert spoofed["decision"] == "deny"
        [check] = spoofed["operations"]  # type: ignore[misc]
        assert check["target"] == "k8s://prod-eu/payments/deployments/api"
        assert check["environment"] == "production"
        real = gate("kubectl --context lab delete deployment api -n payments")
        assert real["decision"] == "allow"
    assert ("payments", "api") in prod.objects[("apps", "v1", "deployments")]  # production's still exists
    assert ("payments", "api") not in sandbox.objects[("apps", "v1", "deployments")]  # the sandbox's was deleted


def test_every_action_and_target_read_is_one_the_check_accepts() -> None:
    """An action the check does not recognize would be decided as a delete, a target it cannot parse refused: the
    readers only produce what the vocabulary knows (what kubectl and helm do is never read as unrecognized)."""
    from envlabel.targets import parse_target

    for _, expected in KUBECTL + HELM:
        for target, action, _ in expected:
            assert classify(action).recognized, action
            parse_target(target)


@pytest.mark.parametrize("line", ["sudo kubectl delete ns payments", "doas helm uninstall api -n payments",
                                  "ssh bastion kubectl delete deploy api -n payments"])
def test_a_wrapper_that_changes_home_names_the_kubeconfig_it_cannot_know(ctx: CommandContext, line: str) -> None:
    """sudo, doas and ssh run kubectl with another HOME: the reason says so and what to pass, not a Python error."""
    plan = plan_command(line, ctx)
    assert not plan.operations and len(plan.unparsed) == 1, plan
    reason = plan.unparsed[0].reason
    assert "HOME" in reason and "--kubeconfig" in reason and "Error" not in reason, reason
    # naming the file is enough to read the command again
    named = plan_command(f"{line} --kubeconfig {ctx.cwd}/.kube/config", ctx)
    assert named.operations and not named.unparsed, named
