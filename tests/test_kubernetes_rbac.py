"""The shipped ClusterRole is exactly what the scanner declares, and covers every call a scan and a watch make."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from envlabel.config import config_from_dict
from envlabel.discovery.kubernetes import BUILTIN_KINDS, PERMISSIONS, VERBS, KubernetesScanner, Rule, rules_for
from envlabel.service.daemon.watch import KubernetesWatcher
from envlabel.store import open_store
from tests.kubernetes_cluster import fake_cluster, seed_payments

ROLE = Path(__file__).resolve().parents[1] / "discovery" / "kubernetes-clusterrole.yaml"


def shipped_rules() -> list[Rule]:
    role = yaml.safe_load(ROLE.read_text())
    assert role["kind"] == "ClusterRole" and role["apiVersion"] == "rbac.authorization.k8s.io/v1"
    return [Rule(group, tuple(sorted(rule["resources"])), tuple(rule["verbs"]))
            for rule in role["rules"] for group in rule["apiGroups"]]


def test_the_clusterrole_is_read_only_exactly_the_declared_kinds_and_no_secrets() -> None:
    rules = shipped_rules()
    assert sorted(rules, key=lambda r: r.api_group) == rules_for(BUILTIN_KINDS)
    assert all(set(r.verbs) == set(VERBS) == {"get", "list", "watch"} for r in rules)
    assert not [r for r in rules if "secrets" in r.resources or "*" in r.resources]
    granted = {f"{verb} {resource}{'.' + r.api_group if r.api_group else ''}"
               for r in rules for resource in r.resources for verb in r.verbs}
    assert granted == set(PERMISSIONS)


def test_every_call_of_a_scan_and_a_watch_is_covered(tmp_path: Path) -> None:
    allowed = {(r.api_group, resource, verb) for r in shipped_rules() for resource in r.resources for verb in r.verbs}
    with fake_cluster(tmp_path) as cluster:
        seed_payments(cluster.fake)
        source = cluster.source()
        assert KubernetesScanner(source, page_size=2).scan().complete
        config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}"})
        store = open_store(config.store)
        watcher = KubernetesWatcher(config, store, source)
        watcher.start()
        try:
            assert watcher.wait_synced(10)
            cluster.fake.set_labels("namespaces", "payments", {"environment": "prod"})
            deadline = time.monotonic() + 10
            while not watcher.stats.events["namespaces"] and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            watcher.stop()
        calls = {(r.group, r.resource, r.verb) for r in cluster.fake.requests}
    assert {verb for _, _, verb in calls} == {"list", "watch"}
    assert calls <= allowed, f"not covered by the ClusterRole: {sorted(calls - allowed)}"
    assert {(g, r) for g, r, _ in calls} == {(k.group, k.resource) for k in BUILTIN_KINDS}
    assert not [c for c in calls if c[1] in ("secrets", "configmaps")]  # configmaps are opt-in


def test_configmaps_are_read_only_by_a_source_that_lists_them_and_need_their_rule(tmp_path: Path) -> None:
    """The default role reads no ConfigMap (a list would grant their data); a source that configures them scans
    them, and its extra calls are exactly the rule the chart adds for it (tests/test_helm.py renders that)."""
    allowed = {(r.api_group, resource, verb) for r in shipped_rules() for resource in r.resources for verb in r.verbs}
    with fake_cluster(tmp_path) as cluster:
        seed_payments(cluster.fake)
        source = cluster.source(resources=[{"resource": "configmaps"}])
        result = KubernetesScanner(source, page_size=2).scan()
        calls = {(r.group, r.resource, r.verb) for r in cluster.fake.requests}
    assert result.complete and "k8s://prod-eu/payments/configmaps/api" in {r.id for r in result.resources}
    assert calls - allowed == {("", "configmaps", "list")}
    assert ("", "configmaps") not in {(k.group, k.resource) for k in BUILTIN_KINDS}
