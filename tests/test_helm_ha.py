"""The chart's HA layout with a real ``helm``: several replicas on a PostgreSQL store whose URL comes from a
Secret, a PodDisruptionBudget that keeps one answering, no volume, and a namespaced Role for the Lease."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.test_helm import CHART, KUBERNETES_VERSIONS, helm, one, render, render_error

HA: dict[str, Any] = {"replicaCount": 3, "postgresql": {"existingSecret": "envlabel-store"}}


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return render(tmp_path_factory.mktemp("helm-ha"), HA)


def test_ha_manifests_lint_and_match_the_kubernetes_schemas(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    for doc in docs:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)
    (tmp_path / "ha.yaml").write_text(yaml.safe_dump(HA))
    done = helm("lint", "--strict", str(CHART), "-f", str(tmp_path / "ha.yaml"), tmp=tmp_path)
    assert done.returncode == 0 and "0 chart(s) failed" in done.stdout, done.stdout + done.stderr


def test_replicas_share_the_store_from_the_secret_without_a_volume(docs: list[dict[str, Any]]) -> None:
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["ENVLABEL_STORE"]["valueFrom"] == {"secretKeyRef": {"name": "envlabel-store", "key": "url"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert next(v for v in pod["volumes"] if v["name"] == "data") == {"name": "data", "emptyDir": {}}
    spread = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert spread["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert one(docs, "PodDisruptionBudget")["spec"] == {
        "minAvailable": 1, "selector": deployment["spec"]["selector"]}
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["envlabel.yaml"])
    assert "store" not in config  # no URL, no password in the ConfigMap
    assert config["leader_election"] == {"kind": "lease", "in_cluster": True, "namespace": "envlabel",
                                         "lease_name": "rel-envlabel-leader"}


def test_leases_are_granted_in_the_release_namespace_only(docs: list[dict[str, Any]]) -> None:
    role, binding = one(docs, "Role"), one(docs, "RoleBinding")
    assert role["metadata"]["namespace"] == "envlabel" and binding["metadata"]["namespace"] == "envlabel"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["rel-envlabel-leader"],
         "verbs": ["get", "update"]}]
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "envlabel"}]
    for rule in one(docs, "ClusterRole")["rules"]:  # nothing cluster-wide beyond reading
        assert "leases" not in rule["resources"] and set(rule["verbs"]) <= {"get", "list", "watch"}


def test_the_rendered_config_validates_with_the_store_from_the_environment(docs: list[dict[str, Any]],
                                                                          tmp_path: Path) -> None:
    config = tmp_path / "envlabel.yaml"
    config.write_text(one(docs, "ConfigMap")["data"]["envlabel.yaml"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVLABEL_")}
    env["ENVLABEL_STORE"] = "postgresql://envlabel:secret@db.example.com:5432/envlabel"
    done = subprocess.run([str(Path(sys.executable).parent / "envlabel"), "validate", "--config", str(config)],
                          check=False, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and "configuration ok" in done.stdout, done.stderr


def test_several_replicas_without_a_postgresql_secret_are_refused_saying_what_to_set(tmp_path: Path) -> None:
    # docs/helm.md's case: a message that names the value to set and how, not a schema's "Must validate then"
    for values in ({"replicaCount": 2}, {"replicaCount": 2, "config": {"store": "postgresql://envlabel:secret@db/envlabel"}},
                   {"config": {"store": "postgresql://envlabel:secret@db/envlabel"}}):
        error = render_error(tmp_path, values)
        assert "kubectl create secret generic envlabel-store --from-literal=url=postgresql://" in error, error
        assert "set postgresql.existingSecret=envlabel-store" in error and "Must validate" not in error
    assert "replicaCount > 1 needs a shared store" in render_error(tmp_path, {"replicaCount": 2})
    assert "remove config.store" in render_error(tmp_path, {"config": {"store": "postgresql://u:secret@db/envlabel"}})
    both = {**HA, "config": {"store": "postgresql://envlabel:secret@db/envlabel"}}
    assert "remove config.store" in render_error(tmp_path, both)


def test_one_replica_on_postgresql_keeps_the_default_disruption_budget(tmp_path: Path) -> None:
    docs = render(tmp_path, {"postgresql": {"existingSecret": "envlabel-store", "urlKey": "dsn"}})
    assert one(docs, "Deployment")["spec"]["replicas"] == 1
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    env = {e["name"]: e for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ENVLABEL_STORE"]["valueFrom"]["secretKeyRef"] == {"name": "envlabel-store", "key": "dsn"}
