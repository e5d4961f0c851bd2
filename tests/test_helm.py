"""The Helm chart with a real ``helm`` (lint, template), rendered manifests checked against the Kubernetes
schemas, RBAC and pod security asserted, the rendered config run through ``envlabel validate``; and the
Dockerfile read statically (Docker cannot run here)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.helm_tool import ROOT, tool

CHART = ROOT / "helm" / "envlabel"
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}  # no built-in schema: checked by hand below
READ_VERBS = {"get", "list", "watch"}
TOKEN_HASH = hashlib.sha256(b"agent-token").hexdigest()

CUSTOM: dict[str, Any] = {
    "image": {"repository": "registry.example.com/envlabel", "tag": "0.1.0-rc1"},
    "config": {
        "store": "sqlite:////var/lib/envlabel/custom.db",
        "environments": ["production", "dr", "staging", "sandbox"],
        "policy": {"dr": {"read": "allow", "create": "require_approval", "modify": "require_approval",
                          "delete": "deny"}},
        "schedule": {"interval": "10m", "jitter": "1m"},
        "sources": [
            {"name": "org", "type": "aws", "organization": True, "regions": ["us-east-1", "eu-west-1"]},
            {"name": "gke-prod", "type": "kubernetes", "in_cluster": True, "environment": "production"},
            {"name": "gcp", "type": "gcp", "organization": "123456789"},
        ],
        "webhooks": [{"url": "https://hooks.example.com/envlabel", "secret_env": "WEBHOOK_SECRET"}],
    },
    "api": {"tokens": [{"name": "agents", "role": "reader", "sha256": TOKEN_HASH}]},
    "serviceAccount": {"awsRoleArn": "arn:aws:iam::111122223333:role/envlabel-read-only",
                       "gcpServiceAccount": "envlabel@platform.iam.gserviceaccount.com"},
    "rbac": {"extraRules": [{"apiGroups": ["argoproj.io"], "resources": ["applications"],
                             "verbs": ["get", "list", "watch"]}]},
    "persistence": {"enabled": False},
    "networkPolicy": {"ingressFrom": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "agents"}}}], "egress": [{}]},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "extraEnv": [{"name": "WEBHOOK_SECRET", "valueFrom": {"secretKeyRef": {"name": "hooks", "key": "secret"}}}],
    "extraVolumes": [{"name": "kubeconfigs", "secret": {"secretName": "remote-clusters"}}],
    "extraVolumeMounts": [{"name": "kubeconfigs", "mountPath": "/etc/envlabel/clusters", "readOnly": True}],
    "shutdownTimeoutSeconds": 20,
}
EXISTING_SECRET: dict[str, Any] = {"api": {"existingSecret": "envlabel-tokens", "existingSecretKey": "tokens"}}


def helm(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_CACHE_HOME": str(tmp / "cache"), "HELM_CONFIG_HOME": str(tmp / "config"),
           "HELM_DATA_HOME": str(tmp / "data")}
    return subprocess.run([str(tool("helm")), *args], check=False, capture_output=True, text=True, env=env,
                          timeout=120)


def render(tmp: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    args = ["template", "rel", str(CHART), "--namespace", "envlabel"]
    if values is not None:
        path = tmp / f"values-{len(list(tmp.glob('values-*')))}.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["-f", str(path)]
    done = helm(*args, tmp=tmp)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def render_error(tmp: Path, values: dict[str, Any]) -> str:
    path = tmp / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    done = helm("template", "rel", str(CHART), "-f", str(path), tmp=tmp)
    assert done.returncode != 0, "helm rendered values it should have refused"
    return done.stderr


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("helm")
    return {"default": render(tmp), "custom": render(tmp, CUSTOM), "existing-secret": render(tmp, EXISTING_SECRET)}


def all_docs(renders: dict[str, list[dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, docs in renders.items():
        for doc in docs:
            yield name, doc


# -- lint and schemas ---------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [None, CUSTOM, EXISTING_SECRET], ids=["default", "custom", "existing-secret"])
def test_helm_lint_strict(values: dict[str, Any] | None, tmp_path: Path) -> None:
    args = ["lint", "--strict", str(CHART)]
    if values is not None:
        (tmp_path / "v.yaml").write_text(yaml.safe_dump(values))
        args += ["-f", str(tmp_path / "v.yaml")]
    done = helm(*args, tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_rendered_manifests_match_the_kubernetes_schemas(renders: dict[str, list[dict[str, Any]]]) -> None:
    checked = 0
    for _, doc in all_docs(renders):
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)  # raises on any unknown or wrong field
            checked += 1
    assert checked >= 2 * 20
    kinds = {d["kind"] for d in renders["default"]}
    assert kinds == {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Secret",
                     "Service", "PersistentVolumeClaim", "PodDisruptionBudget", "NetworkPolicy"}


def test_service_monitor_scrapes_metrics(renders: dict[str, list[dict[str, Any]]]) -> None:
    assert not [d for d in renders["default"] if d["kind"] == "ServiceMonitor"]
    monitor = one(renders["custom"], "ServiceMonitor")
    service = one(renders["custom"], "Service")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s",
                                             "scrapeTimeout": "10s"}]


def test_values_schema_refuses_unsafe_values(tmp_path: Path) -> None:
    assert "verbs" in render_error(tmp_path, {"rbac": {"extraRules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]}})
    assert "resources" in render_error(tmp_path, {"rbac": {"extraRules": [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}})
    assert "config.api" in render_error(tmp_path, {"config": {"api": {"tokens": []}}})
    assert "runAsNonRoot" in render_error(tmp_path, {"securityContext": {"runAsNonRoot": False}})
    assert "postgresql.existingSecret" in render_error(tmp_path, {"replicaCount": 2})  # tests/test_helm_ha.py: the rest
    assert "never reads secrets" in render_error(tmp_path, {"config": {"sources": [
        {"name": "c", "type": "kubernetes", "in_cluster": True, "resources": [{"resource": "secrets"}]}]}})
    assert "unknwn" in render_error(tmp_path, {"unknwn": 1})
    assert "readOnly" in render_error(tmp_path, {"extraVolumeMounts": [{"name": "x", "mountPath": "/x"}]})


# -- RBAC ----------------------------------------------------------------------------------------------
def test_cluster_role_rules_are_the_scanners_role(renders: dict[str, list[dict[str, Any]]]) -> None:
    discovery = yaml.safe_load((ROOT / "discovery" / "kubernetes-clusterrole.yaml").read_text())
    assert one(renders["default"], "ClusterRole")["rules"] == discovery["rules"]
    assert not [r for r in discovery["rules"] if "configmaps" in r["resources"]]  # not every ConfigMap's data


def test_kinds_an_in_cluster_source_lists_get_their_read_rule(tmp_path: Path) -> None:
    source = {"name": "in-cluster", "type": "kubernetes", "in_cluster": True,
              "resources": [{"resource": "configmaps"}, {"group": "example.com", "resource": "widgets"}]}
    remote = {"name": "remote", "type": "kubernetes", "kubeconfig": "/k", "resources": [{"resource": "endpoints"}]}
    rules = one(render(tmp_path, {"config": {"sources": [source, remote]}}), "ClusterRole")["rules"]
    discovery = yaml.safe_load((ROOT / "discovery" / "kubernetes-clusterrole.yaml").read_text())["rules"]
    assert rules == [*discovery, {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
                     {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list", "watch"]}]


def test_rbac_is_read_only_and_never_touches_secrets(renders: dict[str, list[dict[str, Any]]]) -> None:
    for name, doc in all_docs(renders):
        if doc["kind"] not in ("Role", "ClusterRole"):
            continue
        for rule in doc["rules"]:
            assert set(rule["verbs"]) <= READ_VERBS, (name, rule)
            assert not {"secrets", "*"} & set(rule["resources"]), (name, rule)
            assert "*" not in rule["apiGroups"], (name, rule)
    for docs in renders.values():
        binding, account = one(docs, "ClusterRoleBinding"), one(docs, "ServiceAccount")
        assert binding["roleRef"]["name"] == one(docs, "ClusterRole")["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                        "namespace": "envlabel"}]
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == account["metadata"]["name"]
    extra = one(renders["custom"], "ClusterRole")["rules"][-1]
    assert extra == {"apiGroups": ["argoproj.io"], "resources": ["applications"], "verbs": ["get", "list", "watch"]}


def test_service_account_carries_irsa_and_workload_identity(renders: dict[str, list[dict[str, Any]]]) -> None:
    assert "annotations" not in one(renders["default"], "ServiceAccount")["metadata"]
    assert one(renders["custom"], "ServiceAccount")["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/envlabel-read-only",
        "iam.gke.io/gcp-service-account": "envlabel@platform.iam.gserviceaccount.com"}


# -- the pod -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["default", "custom", "existing-secret"])
def test_pod_runs_restricted_with_probes_and_a_bounded_shutdown(
        renders: dict[str, list[dict[str, Any]]], name: str) -> None:
    deployment = one(renders[name], "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] != 0
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]} and context["privileged"] is False
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    # the only writable places are the store and /tmp; the config (and any extra mount) is read-only
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/var/lib/envlabel", "/tmp"}
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/etc/envlabel", "/var/lib/envlabel", "/tmp"}
    args = container["args"]
    assert args[:3] == ["serve", "--config", "/etc/envlabel/envlabel.yaml"]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    timeout = int(args[args.index("--shutdown-timeout") + 1])
    assert pod["terminationGracePeriodSeconds"] == timeout + 10
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_storage_is_a_claim_by_default_and_an_empty_dir_when_disabled(
        renders: dict[str, list[dict[str, Any]]]) -> None:
    def data_volume(docs: list[dict[str, Any]]) -> dict[str, Any]:
        volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        return next(v for v in volumes if v["name"] == "data")

    claim = one(renders["default"], "PersistentVolumeClaim")
    assert data_volume(renders["default"])["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    assert data_volume(renders["custom"]) == {"name": "data", "emptyDir": {}}
    assert not [d for d in renders["custom"] if d["kind"] == "PersistentVolumeClaim"]


def test_network_policy_admits_only_the_api_port(renders: dict[str, list[dict[str, Any]]]) -> None:
    default = one(renders["default"], "NetworkPolicy")["spec"]
    assert default["policyTypes"] == ["Ingress"] and default["ingress"] == [
        {"ports": [{"port": "http", "protocol": "TCP"}]}]
    custom = one(renders["custom"], "NetworkPolicy")["spec"]
    assert custom["policyTypes"] == ["Ingress", "Egress"] and custom["egress"] == [{}]
    assert custom["ingress"][0]["from"] == CUSTOM["networkPolicy"]["ingressFrom"]


# -- config and tokens ---------------------------------------------------------------------------------
def secret_value(docs: list[dict[str, Any]], key: str) -> str:
    return base64.b64decode(one(docs, "Secret")["data"][key]).decode()


@pytest.mark.parametrize("name", ["default", "custom"])
def test_rendered_config_passes_envlabel_validate(renders: dict[str, list[dict[str, Any]]], name: str,
                                                  tmp_path: Path) -> None:
    docs = renders[name]
    config = tmp_path / "envlabel.yaml"
    config.write_text(one(docs, "ConfigMap")["data"]["envlabel.yaml"])
    tokens = secret_value(docs, "api-tokens")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVLABEL_")} | {"ENVLABEL_API__TOKENS": tokens}
    env |= {e["name"]: "set-from-its-secret" for e in CUSTOM["extraEnv"]}  # the pod gets these from extraEnv
    done = subprocess.run([str(Path(sys.executable).parent / "envlabel"), "validate", "--config", str(config)],
                          check=False, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "configuration ok" in done.stdout
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    token_env = next(e for e in container["env"] if e["name"] == "ENVLABEL_API__TOKENS")
    assert token_env["valueFrom"]["secretKeyRef"] == {"name": one(docs, "Secret")["metadata"]["name"],
                                                      "key": "api-tokens"}


def test_tokens_are_hashes_and_the_default_generates_a_reader_token_never_an_admin(
        renders: dict[str, list[dict[str, Any]]]) -> None:
    custom = yaml.safe_load(secret_value(renders["custom"], "api-tokens"))
    data = one(renders["custom"], "Secret")["data"]
    assert custom == CUSTOM["api"]["tokens"] and "admin-token" not in data and "reader-token" not in data
    (generated,) = yaml.safe_load(secret_value(renders["default"], "api-tokens"))
    token = secret_value(renders["default"], "reader-token")
    assert len(token) >= 32 and generated == {"name": "helm-generated-reader", "role": "reader",
                                              "sha256": hashlib.sha256(token.encode()).hexdigest()}
    assert not [t for name in ("default", "custom") for t in yaml.safe_load(secret_value(renders[name], "api-tokens"))
                if t["role"] == "admin"]
    assert "admin-token" not in one(renders["default"], "Secret")["data"]
    # no token text in the ConfigMap, ever
    for docs in renders.values():
        assert "tokens" not in yaml.safe_load(one(docs, "ConfigMap")["data"]["envlabel.yaml"]).get("api", {})


def test_an_admin_token_is_generated_only_when_asked(tmp_path: Path) -> None:
    docs = render(tmp_path, {"api": {"adminToken": {"generate": True}, "tokens": CUSTOM["api"]["tokens"]}})
    admin = secret_value(docs, "admin-token")
    assert yaml.safe_load(secret_value(docs, "api-tokens")) == [
        *CUSTOM["api"]["tokens"], {"name": "helm-generated-admin", "role": "admin",
                                   "sha256": hashlib.sha256(admin.encode()).hexdigest()}]
    assert "reader-token" not in one(docs, "Secret")["data"]  # tokens were given
    error = render_error(tmp_path, {"api": {"adminToken": {"generate": True}, "existingSecret": "mine"}})
    assert "add the admin token's {name, role: admin, sha256} to the list in your Secret" in error


def server_render(tmp: Path, kubeconfig: Path, values: dict[str, Any]) -> dict[str, Any]:
    """The chart's token Secret as `helm upgrade` renders it: against a cluster (the fake API server), so that
    `lookup` sees what the last install wrote."""
    path = tmp / "server-values.yaml"
    path.write_text(yaml.safe_dump(values))
    done = helm("template", "rel", str(CHART), "--namespace", "envlabel", "--dry-run=server", "--kubeconfig",
                str(kubeconfig), "-f", str(path), "--show-only", "templates/secret.yaml", tmp=tmp)
    assert done.returncode == 0, done.stderr
    secret: dict[str, Any] = yaml.safe_load(done.stdout)
    return secret


def test_generated_tokens_survive_re_rendering_through_lookup(tmp_path: Path) -> None:
    from tests.kubernetes_cluster import fake_cluster

    values = {"api": {"adminToken": {"generate": True}}}
    with fake_cluster(tmp_path) as cluster:
        cluster.fake.seed("namespaces", "envlabel")
        first = server_render(tmp_path, cluster.kubeconfig, values)  # the install: nothing to look up yet
        assert server_render(tmp_path, cluster.kubeconfig, values)["data"] != first["data"]  # fresh each time
        cluster.fake.seed("secrets", first["metadata"]["name"], "envlabel", fields={"data": first["data"]})
        again = server_render(tmp_path, cluster.kubeconfig, values)  # the upgrade
        assert again["data"] == first["data"]  # same reader and admin tokens, same hashes: nothing rotates
        assert {"reader-token", "admin-token", "api-tokens"} == set(again["data"])
        assert [(r.resource, r.verb) for r in cluster.fake.requests if r.resource == "secrets"] == [
            ("secrets", "get")] * 3  # a get by name only: the chart never lists the namespace's secrets


def test_an_existing_secret_replaces_the_charts(renders: dict[str, list[dict[str, Any]]]) -> None:
    docs = renders["existing-secret"]
    assert not [d for d in docs if d["kind"] == "Secret"]
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    token_env = next(e for e in container["env"] if e["name"] == "ENVLABEL_API__TOKENS")
    assert token_env["valueFrom"]["secretKeyRef"] == {"name": "envlabel-tokens", "key": "tokens"}


# -- the image -----------------------------------------------------------------------------------------
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    rows = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(row.split(None, 1)[0].upper(), row.split(None, 1)[1] if " " in row else "") for row in rows]


def test_dockerfile_is_multi_stage_non_root_with_a_data_volume() -> None:
    instructions = dockerfile()
    stages = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    assert len(stages) >= 2 and " AS builder" in instructions[stages[0]][1]
    runtime = instructions[stages[-1]:]
    ops = dict(runtime)
    assert ops["USER"].split(":")[0] == "10001"
    assert ops["VOLUME"] == '["/var/lib/envlabel"]'
    assert ops["ENTRYPOINT"] == '["envlabel"]'
    assert ops["CMD"] == '["serve", "--config", "/etc/envlabel/envlabel.yaml", "--host", "0.0.0.0"]'
    assert "ENVLABEL_CONFIG=/etc/envlabel/envlabel.yaml" in ops["ENV"]  # `docker exec ... envlabel get` reads it too
    builder = instructions[stages[0]:stages[-1]]
    installs = " ".join(args for op, args in builder if op == "RUN")
    assert "--require-hashes" in installs and "-r requirements.lock" in installs  # every dependency by sha256
    assert ("COPY", "--from=builder /opt/envlabel /opt/envlabel") in runtime
    assert "PYTHONDONTWRITEBYTECODE=1" in ops["ENV"]  # nothing written next to the code: read-only root works
    # plain Dockerfile syntax: builds without BuildKit
    assert not [args for op, args in instructions if op == "RUN" and "--mount" in args]
    assert "syntax=" not in (ROOT / "Dockerfile").read_text().splitlines()[0]
    # the base is an argument, so a build pins it by digest (--build-arg PYTHON_IMAGE=...@sha256:...)
    assert instructions[0] == ("ARG", "PYTHON_IMAGE=python:3.12-slim-bookworm")
    assert all(args.startswith("${PYTHON_IMAGE} AS ") for op, args in instructions if op == "FROM")
    # the user switch comes after every RUN, so nothing runs as root at run time
    assert max(i for i, (op, _) in enumerate(runtime) if op == "RUN") < runtime.index(("USER", ops["USER"]))
    for op, args in instructions:
        assert not (op == "ADD" and re.search(r"https?://", args)), "fetch remote files in a RUN with a checksum"
    assert not [op for op, _ in instructions if op == "ADD"]


def test_dockerignore_keeps_only_the_packages() -> None:
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    allowed = {ln.removeprefix("!").rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "requirements.lock", "envlabel", "discovery", "labelers", "store",
                       "service"}


def test_the_lock_pins_every_dependency_of_the_daemon_with_a_hash() -> None:
    lock = re.sub(r"\\\n\s*", " ", (ROOT / "requirements.lock").read_text())
    entries = [line for line in lock.splitlines() if line and not line.startswith("#")]
    assert entries and all(re.fullmatch(r"[a-z0-9-]+==[^ ]+ +--hash=sha256:[0-9a-f]{64}", e) for e in entries), entries
    pinned = {e.split("==")[0] for e in entries}
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"]["daemon"]:
        name = re.split(r"[\[<>=; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is a dependency of envlabel[daemon] but not in requirements.lock"
