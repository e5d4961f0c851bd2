"""``envlabel export gcp-deny`` and ``k8s-vap`` from labels a real scan stored: the fake Cloud Resource Manager
through the real google-cloud-resource-manager client, the fake Kubernetes API server through the official
kubernetes client, into a real SQLite store; the artifacts checked against the IAM v2 Policy shape and the
Kubernetes schemas (kubernetes-validate)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema
import kubernetes_validate
import pytest
import yaml

from envlabel.actions import classify
from envlabel.config import Config, config_from_dict
from envlabel.service.core.errors import InvalidRequest
from envlabel.service.core.export import ExportOptions, export_kind
from envlabel.service.core.export.gcp_deny import DELETE_PERMISSIONS, DENIABLE, MODIFY_PERMISSIONS
from envlabel.service.core.export.k8s_vap import NAME, pattern_regex
from envlabel.service.core.overrides import set_override
from envlabel.service.core.pipeline import run_source
from envlabel.service.core.query import Query
from envlabel.service.demo.fakes.gcp_crm import CRM, ORG_ID, FakeCrm
from envlabel.store import open_store
from tests.estates import cli, write_config
from tests.kubernetes_cluster import FakeCluster, fake_cluster

ROOT = Path(__file__).resolve().parent.parent
#: ValidatingAdmissionPolicy is admissionregistration.k8s.io/v1 from Kubernetes 1.30
VAP_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())

#: the IAM v2 Policy resource (https://cloud.google.com/iam/docs/reference/rest/v2/policies), strict: a field
#: the API does not define fails
PERMISSION = r"^[a-z][a-z0-9-]*(\.[a-z0-9-]+)*\.googleapis\.com/[a-zA-Z]+\.[a-zA-Z]+$"
IAM_V2_POLICY: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["name", "rules"],
    "properties": {
        "name": {"type": "string", "pattern": r"^policies/cloudresourcemanager\.googleapis\.com%2F"
                                              r"(folders%2F\d+|projects%2F[a-z][a-z0-9-]{4,28}[a-z0-9])"
                                              r"/denypolicies/[a-z][a-z0-9-]{0,62}$"},
        "displayName": {"type": "string", "maxLength": 63},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "rules": {"type": "array", "minItems": 1, "maxItems": 500, "items": {
            "type": "object", "additionalProperties": False, "required": ["denyRule"],
            "properties": {
                "description": {"type": "string", "maxLength": 256},
                "denyRule": {
                    "type": "object", "additionalProperties": False,
                    "required": ["deniedPrincipals", "deniedPermissions"],
                    "properties": {
                        "deniedPrincipals": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                        "exceptionPrincipals": {"type": "array", "maxItems": 500, "items": {
                            "type": "string", "pattern": "^principal(Set)?://"}},
                        "deniedPermissions": {"type": "array", "minItems": 1, "items": {
                            "type": "string", "pattern": PERMISSION}},
                        "exceptionPermissions": {"type": "array", "items": {"type": "string"}},
                        "denialCondition": {"type": "object"},
                    },
                },
            },
        }},
    },
}


# -- gcp-deny ------------------------------------------------------------------------------------------
@pytest.fixture
def gcp_query(gcp_url: str, tmp_path: Path) -> Iterator[Query]:
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}",
                               "sources": [{"name": "gcp", "type": "gcp", "organization": ORG_ID,
                                            "api_endpoint": gcp_url}]})
    store = open_store(config.store)
    try:
        assert run_source(config, store, config.sources[0]).complete
        yield Query(config, store)
    finally:
        store.close()


def gcp_files(query: Query, **options: Any) -> dict[str, dict[str, Any]]:
    artifacts = export_kind(query, "gcp-deny", ExportOptions(**options))
    return {a.path: json.loads(a.content) for a in artifacts}


def test_deny_policies_attach_to_the_highest_wholly_protected_folders(gcp_crm: FakeCrm, gcp_query: Query) -> None:
    production, shared = gcp_crm.folder_named("Production"), gcp_crm.folder_named("Shared")
    files = gcp_files(gcp_query, gcp_exception_principals=("principalSet://goog/group/breakglass@example.com",))
    manifest = files.pop("gcp-deny/manifest.json")
    # Production and everything in it; Shared is unlabeled, so fail closed; nothing below them gets its own
    assert sorted(files) == sorted(f"gcp-deny/{f.replace('/', '-')}.json" for f in (production, shared))
    assert sorted(tuple(f["attaches_to"]) for f in manifest["files"]) == sorted(
        [(CRM + production,), (CRM + shared,)])
    policy = files[f"gcp-deny/{production.replace('/', '-')}.json"]
    jsonschema.validate(policy, IAM_V2_POLICY)
    assert unquote(policy["name"]) == (f"policies/cloudresourcemanager.googleapis.com/{production}"
                                       "/denypolicies/envlabel-protect-production")
    rule = policy["rules"][0]["denyRule"]
    assert rule["deniedPrincipals"] == ["principalSet://goog/public:all"]
    assert rule["exceptionPrincipals"] == ["principalSet://goog/group/breakglass@example.com"]
    assert rule["deniedPermissions"] == sorted(DELETE_PERMISSIONS)
    assert "unknown (enforced as production)" in files[f"gcp-deny/{shared.replace('/', '-')}.json"][
        "rules"][0]["description"]


def test_a_less_strict_project_moves_the_policy_down_to_its_protected_siblings(
        gcp_crm: FakeCrm, gcp_query: Query) -> None:
    # a deny policy cannot be lifted lower down: the folder holding a sandbox project is not attached
    set_override(gcp_query, "projects/orders-prod", "sandbox", reason="decommissioned", author="alice")
    files = gcp_files(gcp_query)
    payments = gcp_crm.folder_named("Payments")
    assert f"gcp-deny/{payments.replace('/', '-')}.json" in files
    assert f"gcp-deny/{gcp_crm.folder_named('Production').replace('/', '-')}.json" not in files
    assert "gcp-deny/projects-orders-prod.json" not in files and "gcp-deny/projects-payments-prod.json" not in files
    # a protected project under an unprotected folder is attached on its own
    set_override(gcp_query, "projects/web-staging", "production", reason="now serves customers", author="alice")
    project = gcp_files(gcp_query)["gcp-deny/projects-web-staging.json"]
    jsonschema.validate(project, IAM_V2_POLICY)
    assert project["name"].startswith("policies/cloudresourcemanager.googleapis.com%2Fprojects%2Fweb-staging/")


def test_staging_and_modify_are_opt_in(gcp_crm: FakeCrm, gcp_query: Query) -> None:
    staging = f"gcp-deny/{gcp_crm.folder_named('Staging').replace('/', '-')}.json"
    assert staging not in gcp_files(gcp_query)
    files = gcp_files(gcp_query, environments=("production", "staging"), include_modify=True)
    assert files[staging]["name"].endswith("/denypolicies/envlabel-protect-staging")
    assert files[staging]["rules"][0]["denyRule"]["deniedPermissions"] == sorted(
        DELETE_PERMISSIONS + MODIFY_PERMISSIONS)
    for path, body in files.items():
        if path != "gcp-deny/manifest.json":
            jsonschema.validate(body, IAM_V2_POLICY)


def test_the_denied_permissions_are_the_vocabularys_classes() -> None:
    """A deny policy denies what every check calls a delete (or a modify): each permission read back in IAM v1
    form and classified through the shipped GCP vocabulary (envlabel/data/gcp-permissions.json)."""
    def v1(permission: str) -> str:
        service, _, rest = permission.partition("/")
        prefix = service.removesuffix(".googleapis.com")
        return f"{'resourcemanager' if prefix == 'cloudresourcemanager' else prefix}.{rest}"

    for permissions, wanted in ((DELETE_PERMISSIONS, "delete"), (MODIFY_PERMISSIONS, "modify")):
        for permission in permissions:
            classified = classify(v1(permission))
            assert classified.recognized and classified.action_class == wanted, (permission, classified.reason)
    # every permission of the list is one the vocabulary knows (an unknown one would be a delete by default),
    # and each lands in one of the two sets
    assert all(classify(p).recognized for p in DENIABLE)
    assert sorted(map(v1, DELETE_PERMISSIONS + MODIFY_PERMISSIONS)) == sorted(DENIABLE)
    # the vocabulary classes rewriting a table's data as a delete (a DML DELETE or a truncating load is one)
    assert "bigquery.googleapis.com/tables.updateData" in DELETE_PERMISSIONS


def test_the_denied_permissions_are_the_documented_curated_list() -> None:
    doc = (ROOT / "docs" / "enforcement.md").read_text(encoding="utf-8")
    for permission in DELETE_PERMISSIONS + MODIFY_PERMISSIONS:
        assert re.match(PERMISSION, permission) and f"`{permission}`" in doc
    assert len(set(DELETE_PERMISSIONS)) == len(DELETE_PERMISSIONS)


@pytest.mark.parametrize("principal", ["user:alice@example.com", "arn:aws:iam::111111111111:role/BreakGlass",
                                       "principalSet://goog/public:all"])
def test_exception_principals_a_deny_policy_cannot_take_are_refused(gcp_query: Query, principal: str) -> None:
    with pytest.raises(InvalidRequest, match="principal://goog/subject/EMAIL") as refused:
        gcp_files(gcp_query, gcp_exception_principals=(principal,))
    assert refused.value.field == "export.gcp_exception_principals"


def test_the_cli_writes_the_policies_and_its_check_catches_a_relabel(gcp_crm: FakeCrm, gcp_url: str,
                                                                      tmp_path: Path) -> None:
    config = write_config(tmp_path, sources=[{"name": "gcp", "type": "gcp", "organization": ORG_ID,
                                              "api_endpoint": gcp_url}],
                          export={"gcp_exception_principals": ["principalSet://goog/group/breakglass@example.com"]})
    assert cli(config, "scan").exit_code == 0
    out = tmp_path / "policies"
    assert cli(config, "export", "gcp-deny", "--out", str(out)).exit_code == 0
    written = json.loads((out / "gcp-deny" / f"{gcp_crm.folder_named('Production').replace('/', '-')}.json")
                         .read_text(encoding="utf-8"))
    assert written["rules"][0]["denyRule"]["exceptionPrincipals"] == ["principalSet://goog/group/breakglass@example.com"]
    assert cli(config, "export", "gcp-deny", "--out", str(out), "--check").exit_code == 0
    # staging made production: web-staging now needs a policy the files on disk lack
    assert cli(config, "override", "set", "projects/web-staging", "production", "--reason", "customers",
               "--by", "alice").exit_code == 0
    drift = cli(config, "export", "gcp-deny", "--out", str(out), "--check")
    assert drift.exit_code == 1
    assert "missing: gcp-deny/projects-web-staging.json" in drift.output


# -- k8s-vap -------------------------------------------------------------------------------------------
@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeCluster]:
    with fake_cluster(tmp_path) as running:
        fake = running.fake
        fake.seed("namespaces", "orders", labels={"environment": "production"})
        fake.seed("namespaces", "payments", labels={"environment": "staging"})
        fake.seed("namespaces", "scratch", labels={"env": "dev"})
        fake.seed("namespaces", "legacy")  # no signal: unknown, enforced as production (as is "default")
        fake.seed("namespaces", "kube-system", labels={"environment": "production"})
        fake.seed("namespaces", "envlabel", labels={"environment": "production"})
        fake.seed("deployments", "api", "orders", labels={"app": "api"})
        yield running


def k8s_config(cluster: FakeCluster, tmp_path: Path, **source: Any) -> Config:
    return config_from_dict({
        "store": f"sqlite:///{tmp_path / 'envlabel.db'}",
        "sources": [{"name": "prod-eu", "type": "kubernetes", "kubeconfig": str(cluster.kubeconfig), **source}],
        "admission": {"namespace": "envlabel", "break_glass_groups": ["oncall:break-glass"],
                      "exempt_namespaces": ["monitoring"]}})


def vap_docs(config: Config, **options: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    store = open_store(config.store)
    try:
        assert run_source(config, store, config.sources[0]).complete
        artifacts = export_kind(Query(config, store), "k8s-vap", ExportOptions(**options))
    finally:
        store.close()
    by_path = {a.path: a for a in artifacts}
    manifest = json.loads(by_path.pop("k8s-vap/manifest.json").content)
    assert list(by_path) == ["k8s-vap/prod-eu.yaml"]
    content = by_path["k8s-vap/prod-eu.yaml"].content
    assert not re.search(r"[&*]id\d", content)  # plain YAML: no anchors or aliases
    return list(yaml.safe_load_all(content)), manifest


def cel_tokens(expression: str) -> list[str]:
    """CEL's lexical grammar (strings, numbers, identifiers, operators); raises on anything else."""
    token = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\d+|[A-Za-z_][A-Za-z0-9_]*|==|!=|&&|\|\||<=|>=|[-+*/%!<>?:.,()\[\]{}])')
    tokens, at = [], 0
    while at < len(expression.rstrip()):
        match = token.match(expression, at)
        assert match, f"not CEL at {at}: {expression[at:]!r}"
        tokens.append(match.group(1))
        at = match.end()
    depth = 0
    for t in tokens:
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(t, 0)
        assert depth >= 0, expression
    assert depth == 0, expression
    return tokens


def every_expression(policy: dict[str, Any]) -> list[str]:
    spec = policy["spec"]
    return ([c["expression"] for c in spec["matchConditions"]] + [v["expression"] for v in spec["variables"]]
            + [e for v in spec["validations"] for e in (v["expression"], v["messageExpression"])])


def test_the_binding_selects_the_protected_namespaces_and_never_the_exempt_ones(
        cluster: FakeCluster, tmp_path: Path) -> None:
    docs, manifest = vap_docs(k8s_config(cluster, tmp_path))
    policy, binding = docs
    for version in VAP_VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)
    assert [d["kind"] for d in docs] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"] == NAME
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["default", "legacy", "orders"]}]
    assert manifest["files"][0]["attaches_to"] == [
        "k8s://prod-eu", "k8s://prod-eu/namespaces/default", "k8s://prod-eu/namespaces/legacy",
        "k8s://prod-eu/namespaces/orders"]
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    rules = spec["matchConstraints"]["resourceRules"]
    assert {(tuple(r["operations"]), tuple(r["resources"]), r["scope"]) for r in rules} == {
        (("DELETE",), ("*",), "Namespaced"), (("DELETE",), ("namespaces",), "Cluster"),
        (("CREATE",), ("pods/eviction",), "Namespaced")}
    validation = spec["validations"][0]
    assert validation["expression"].startswith('!(request.operation == "DELETE"')
    assert "UPDATE" not in validation["expression"]
    environments = next(v["expression"] for v in spec["variables"] if v["name"] == "environments")
    assert environments == ('{"default": "unknown (enforced as production)", '
                            '"legacy": "unknown (enforced as production)", "orders": "production"}')
    for expression in every_expression(policy):
        cel_tokens(expression)


def test_match_conditions_exempt_the_webhooks_principals(cluster: FakeCluster, tmp_path: Path) -> None:
    docs, _ = vap_docs(k8s_config(cluster, tmp_path), k8s_exempt_groups=("platform-admins",))
    condition = docs[0]["spec"]["matchConditions"][0]["expression"]
    tokens = cel_tokens(condition)
    literals = {json.loads(t) for t in tokens if t.startswith('"')}
    # exact names in lists, wildcard patterns as anchored regexes
    assert {"system:serviceaccount:envlabel:envlabel", "system:kube-controller-manager", "system:nodes",
            "oncall:break-glass", "platform-admins"} <= literals
    assert "system:masters" not in literals
    regex = pattern_regex("system:serviceaccount:kube-system:*")
    assert regex in literals
    assert re.match(regex, "system:serviceaccount:kube-system:deployment-controller")
    assert not re.match(regex, "system:serviceaccount:default:agent")
    assert not re.match(pattern_regex("a.b*"), "aXb")  # the rest of a pattern is literal


def test_a_wholly_protected_cluster_protects_namespaces_created_later(cluster: FakeCluster, tmp_path: Path) -> None:
    # the cluster is declared production: every namespace inherits it, so select all but the exempt ones
    docs, _ = vap_docs(k8s_config(cluster, tmp_path, environment="production"), include_modify=True)
    policy, binding = docs
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
         "values": ["envlabel", "kube-system", "monitoring"]}]
    assert '"UPDATE"' in policy["spec"]["validations"][0]["expression"]
    assert all("UPDATE" in r["operations"] for r in policy["spec"]["matchConstraints"]["resourceRules"][:2])
    lookup = next(v["expression"] for v in policy["spec"]["variables"] if v["name"] == "environment")
    assert lookup.endswith(': "production"')
    for version in VAP_VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def test_a_cluster_with_nothing_protected_gets_no_file(cluster: FakeCluster, tmp_path: Path) -> None:
    config = k8s_config(cluster, tmp_path, environment="sandbox")
    store = open_store(config.store)
    try:
        assert run_source(config, store, config.sources[0]).complete
        artifacts = export_kind(Query(config, store), "k8s-vap", ExportOptions())
    finally:
        store.close()
    # orders and kube-system say production themselves; kube-system is exempt, orders is not
    assert [a.path for a in artifacts] == ["k8s-vap/prod-eu.yaml", "k8s-vap/manifest.json"]
    config = k8s_config(cluster, tmp_path / "none", environment="sandbox")
    cluster.fake.seed("namespaces", "orders", labels={"environment": "sandbox"})
    (tmp_path / "none").mkdir()
    store = open_store(config.store)
    try:
        assert run_source(config, store, config.sources[0]).complete
        assert [a.path for a in export_kind(Query(config, store), "k8s-vap", ExportOptions())] == [
            "k8s-vap/manifest.json"]
    finally:
        store.close()
