"""The audit over a real SQLite store filled by the real scan pipeline from hand-built observations.

Golden files live in tests/golden/; regenerate them after an intended change with
``UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_audit.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from envlabel.config import config_from_dict
from envlabel.labelers.remediation import tag_command
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Override, Resource, ScanError, ScanResult
from envlabel.service.core.audit import findings, format_markdown, format_table, to_sarif
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.store import open_store
from envlabel.store.sql import Store
from envlabel.targets import GCP_CRM

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
TAX = Taxonomy()
ORG = "arn:aws:organizations::111111111111"
ROOT = f"{ORG}:root/o-abc123/r-ab12"


def ou(name: str, parent: str, tags: dict[str, str] | None = None) -> Resource:
    return Resource(f"{ORG}:ou/o-abc123/ou-ab12-{name.lower():0>8}", "aws", "aws:ou", name, parent, tags or {},
                    "org", name_signal=True, path=f"/Root/{name}")


def account(number: str, name: str, parent: str, tags: dict[str, str] | None = None) -> Resource:
    return Resource(number, "aws", "aws:account", name, parent, tags or {}, "org")


def arn(service: str, acct: str, rest: str, region: str = "us-east-1") -> str:
    return f"arn:aws:{service}:{region}:{acct}:{rest}"


def leaf(rid: str, kind: str, name: str, parent: str, tags: dict[str, str] | None = None) -> Resource:
    scope = f"{rid.split(':')[4]}/us-east-1" if rid.startswith("arn:") else ""
    return Resource(rid, "aws", kind, name, parent, tags or {}, scope, region="us-east-1")


def aws_estate() -> list[Resource]:
    """An Organization with every kind of mistake, each once, plus clean resources around them."""
    prod, sbx, work = ou("Production", ROOT), ou("Sandbox", ROOT), ou("Workloads", ROOT)
    orders = account("222222222222", "orders", prod.id, {"env": "prd"})  # non-canonical on production
    play = account("333333333333", "playground", sbx.id, {"Environment": "sandbox"})
    legacy = account("444444444444", "legacy-7", work.id)  # nothing anywhere: one unlabeled finding
    shared = account("555555555555", "shared-services", work.id, {"Environment": "nonprod"})  # unrecognized
    analytics = account("666666666666", "analytics", work.id, {"Environment": "staging"})  # Workloads is mixed
    vpc = leaf(arn("ec2", orders.id, "vpc/vpc-0a1"), "ec2:vpc", "main", orders.id, {"Environment": "sandbox"})
    instances = [leaf(arn("ec2", orders.id, f"instance/i-{n:04d}"), "ec2:instance", f"web-{n}", vpc.id)
                 for n in range(40)]  # they inherit the conflict; the fix is on the VPC alone
    rds = leaf(arn("rds", orders.id, "db:orders"), "rds:db", "orders", orders.id,
               {"Environment": "dev", "env": "prod"})  # ambiguous
    bucket = leaf("arn:aws:s3:::orders-logs", "s3:bucket", "orders-logs", orders.id, {"Environment": "Production"})
    twin = leaf(arn("rds", play.id, "db:orders-prod-copy"), "rds:db", "orders-prod-copy", play.id)  # name-mismatch
    claims = leaf(arn("lambda", play.id, "function:billing"), "lambda:function", "billing", play.id,
                  {"Environment": "production"})  # claims production inside a sandbox account
    legacy_vpc = leaf(arn("ec2", legacy.id, "vpc/vpc-0b2"), "ec2:vpc", "legacy", legacy.id)
    legacy_boxes = [leaf(arn("ec2", legacy.id, f"instance/i-1{n:03d}"), "ec2:instance", f"box-{n}", legacy_vpc.id)
                    for n in range(3)]
    shared_db = leaf(arn("rds", shared.id, "db:ldap"), "rds:db", "ldap", shared.id)
    root = Resource(ROOT, "aws", "aws:root", "Root", None, {}, "org", path="/Root")
    return [root, prod, sbx, work, orders, play, legacy, shared, analytics, vpc, *instances, rds, bucket, twin, claims,
            legacy_vpc, *legacy_boxes, shared_db]


def gcp_estate() -> list[Resource]:
    org = Resource(f"{GCP_CRM}organizations/123456", "gcp", "gcp:organization", "example.com", None, {},
                   "organizations/123456")
    folder = Resource(f"{GCP_CRM}folders/456", "gcp", "gcp:folder", "web", org.id, {"environment": "staging"},
                      "organizations/123456")
    web = Resource(f"{GCP_CRM}projects/web-stg", "gcp", "gcp:project", "web-stg", folder.id,
                   {"environment": "stg"}, "organizations/123456")  # non-canonical, not production: low
    ml = Resource(f"{GCP_CRM}projects/ml-lab", "gcp", "gcp:project", "ml-lab", org.id, {}, "organizations/123456")
    return [org, folder, web, ml]


def k8s_estate() -> list[Resource]:
    cluster = Resource("k8s://prod-eu", "kubernetes", "k8s:cluster", "prod-eu", None, {}, "prod-eu",
                       declared="production")
    payments = Resource("k8s://prod-eu/namespaces/payments", "kubernetes", "k8s:namespaces", "payments",
                        cluster.id, {"environment": "dev"}, "prod-eu")
    api = Resource("k8s://prod-eu/payments/deployments/api", "kubernetes", "k8s:deployments", "api", payments.id,
                   {"app": "api"}, "prod-eu")
    tools = Resource("k8s://prod-eu/namespaces/tools", "kubernetes", "k8s:namespaces", "tools", cluster.id,
                     {"environment": "production"}, "prod-eu")
    runner = Resource("k8s://prod-eu/tools/deployments/runner", "kubernetes", "k8s:deployments", "runner",
                      tools.id, {"environment": "qa"}, "prod-eu")
    return [cluster, payments, api, tools, runner]


def stale_estate() -> list[Resource]:
    cluster = Resource("k8s://lab", "kubernetes", "k8s:cluster", "lab", None, {}, "lab", declared="sandbox")
    return [cluster, Resource("k8s://lab/namespaces/ci", "kubernetes", "k8s:namespaces", "ci", cluster.id, {}, "lab")]


CONFIG: dict[str, Any] = {"sources": [
    {"name": "aws-org", "type": "aws", "organization": True},
    {"name": "gcp-org", "type": "gcp", "organization": "123456"},
    {"name": "prod-eu", "type": "kubernetes", "environment": "production"},
    {"name": "lab", "type": "kubernetes", "environment": "sandbox"},
]}


def fill(store: Store) -> None:
    aws = aws_estate()
    scopes = frozenset(r.scope for r in aws)
    commit_scan(store, TAX, ScanResult("aws-org", aws, scopes=scopes), T0, T0)
    commit_scan(store, TAX, ScanResult("gcp-org", gcp_estate(), scopes=frozenset({"organizations/123456"})), T0, T0)
    commit_scan(store, TAX, ScanResult("prod-eu", k8s_estate(), scopes=frozenset({"prod-eu"})), T0, T0)
    # lab was scanned three days ago and every scan since failed: its labels are stale
    old = T0 - timedelta(days=3)
    commit_scan(store, TAX, ScanResult("lab", stale_estate(), scopes=frozenset({"lab"})), old, old)
    failed = ScanResult("lab", [], [ScanError("lab", "Unauthorized: the service account token expired")])
    commit_scan(store, TAX, failed, T0, T0)


@pytest.fixture
def query(tmp_path: Path) -> Query:
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    fill(store)
    return Query(config_from_dict(CONFIG), store)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"{path} missing; run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} differs from the golden file; if intended, regenerate it " \
                                     "with UPDATE_GOLDEN=1 and review the diff"


def by_kind(rows: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["kind"] == kind]


def test_golden_json_and_markdown(query: Query) -> None:
    rows = findings(query, now=NOW)
    check_golden("audit.json", json.dumps(rows, indent=2) + "\n")
    check_golden("audit.md", format_markdown(rows, NOW))
    check_golden("audit.txt", format_table(rows) + "\n")


def test_one_finding_per_fix(query: Query) -> None:
    rows = findings(query, now=NOW)
    conflicts = {r["target"] for r in by_kind(rows, "conflict")}
    vpc = arn("ec2", "222222222222", "vpc/vpc-0a1")
    # the VPC carries the disagreeing tag; its 40 instances inherit the conflict but get no finding
    assert vpc in conflicts
    assert not any("instance/i-0" in t for t in conflicts)
    [unlabeled_legacy] = [r for r in by_kind(rows, "unlabeled") if r["target"] == "444444444444"]
    assert "and 4 resource(s) in it" in unlabeled_legacy["message"]  # its VPC and 3 instances
    assert not any("444444444444:" in r["target"] for r in rows)
    # the root holds every environment by design: no finding; the Workloads OU has no signal of its own while
    # accounts in it do: it is reported on itself, naming the account that already says another environment
    assert not [r for r in rows if r["target"] == ROOT]
    [workloads] = [r for r in rows if r["target"].endswith("ou-ab12-workloads")]
    assert workloads["kind"] == "unlabeled" and "aws:account analytics (666666666666)" in workloads["message"]
    # an unrecognized value on an unlabeled account is one finding, not also an unlabeled one
    shared = [r for r in rows if r["target"] == "555555555555"]
    assert [r["kind"] for r in shared] == ["unrecognized"]
    assert "1 resource(s) in it inherit nothing" in shared[0]["message"]


def test_each_kind_with_its_fix(query: Query) -> None:
    rows = {(r["target"], r["kind"]): r for r in findings(query, now=NOW)}
    vpc = rows[(arn("ec2", "222222222222", "vpc/vpc-0a1"), "conflict")]
    assert (vpc["severity"], vpc["environment"]) == ("high", "production")
    assert vpc["remediation"]["tags"] == {"Environment": "production"}
    assert vpc["remediation"]["command"] == (
        "aws resourcegroupstaggingapi tag-resources --region us-east-1 --resource-arn-list "
        "arn:aws:ec2:us-east-1:222222222222:vpc/vpc-0a1 --tags Environment=production")
    rds = rows[(arn("rds", "222222222222", "db:orders"), "ambiguous")]
    assert rds["remediation"]["tags"] == {"Environment": "production", "env": "production"}
    acct = rows[("222222222222", "non-canonical")]
    assert acct["remediation"]["command"] == ("aws organizations tag-resource --resource-id 222222222222 "
                                              "--tags Key=env,Value=production")
    assert ("arn:aws:s3:::orders-logs", "non-canonical") not in rows  # "Production": case is ignored
    twin = rows[(arn("rds", "333333333333", "db:orders-prod-copy"), "name-mismatch")]
    assert (twin["severity"], twin["environment"]) == ("medium", "production")  # not production: not high
    claims = rows[(arn("lambda", "333333333333", "function:billing"), "conflict")]
    assert claims["environment"] == "production" and "move it out" in claims["remediation"]["text"]
    web = rows[(f"{GCP_CRM}projects/web-stg", "non-canonical")]
    assert (web["severity"], web["remediation"]["command"]) == (
        "low", "gcloud projects update web-stg --update-labels=environment=staging")
    ml = rows[(f"{GCP_CRM}projects/ml-lab", "unlabeled")]
    assert ml["severity"] == "high" and "treat it as production" in ml["message"]
    ns = rows[("k8s://prod-eu/namespaces/payments", "conflict")]
    assert ns["remediation"]["command"] == ("kubectl --context prod-eu label namespace payments "
                                            "environment=production --overwrite")
    runner = rows[("k8s://prod-eu/tools/deployments/runner", "conflict")]
    assert runner["remediation"]["command"] == ("kubectl --context prod-eu -n tools label deployments runner "
                                                "environment=production --overwrite")
    assert ("k8s://prod-eu/payments/deployments/api", "conflict") not in rows
    stale = rows[("lab", "stale")]
    assert stale["severity"] == "medium" and "token expired" in stale["message"]
    assert stale["remediation"]["command"] == "envlabel scan --source lab"


def test_a_tag_disagreeing_with_an_override_is_a_conflict(query: Query) -> None:
    target = "k8s://prod-eu/namespaces/payments"
    with query.store.transaction() as tx:
        tx.set_override(Override(target, "production", "payments is production", "alice", T0))
    [finding] = [r for r in findings(query, now=NOW) if r["target"] == target]
    # the tag still says dev: one conflict against the override, no separate non-canonical finding
    assert (finding["kind"], finding["environment"]) == ("conflict", "production")
    assert "override by alice" in finding["message"]
    assert finding["remediation"]["tags"] == {"environment": "production"}


def test_filters(query: Query) -> None:
    assert {r["kind"] for r in findings(query, kind="stale", now=NOW)} == {"stale"}
    assert {r["severity"] for r in findings(query, severity="medium", now=NOW)} == {"high", "medium"}
    gcp = findings(query, provider="gcp", now=NOW)
    assert gcp and all(r["target"].startswith(GCP_CRM) for r in gcp)
    assert [r["target"] for r in findings(query, provider="kubernetes", kind="stale", now=NOW)] == ["lab"]
    with pytest.raises(ValueError, match="severity must be one of high, medium, low"):
        findings(query, severity="critical")


def test_sarif_validates_against_the_official_schema(query: Query) -> None:
    schema = json.loads((HERE / "sarif-schema-2.1.0.json").read_text())
    log = to_sarif(findings(query, now=NOW))
    jsonschema.Draft4Validator(schema).validate(log)
    assert log["version"] == "2.1.0" and log["runs"][0]["results"]
    broken = json.loads(json.dumps(log))
    broken["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(broken)


@pytest.mark.parametrize(("resource", "command"), [
    (Resource(f"{ORG}:ou/o-abc123/ou-ab12-34567890", "aws", "aws:ou", "Prod", None),
     "aws organizations tag-resource --resource-id ou-ab12-34567890 --tags Key=Environment,Value=production"),
    (Resource("arn:aws:s3:::logs", "aws", "s3:bucket", "logs"),
     "aws resourcegroupstaggingapi tag-resources --resource-arn-list arn:aws:s3:::logs --tags Environment=production"),
    (Resource(f"{GCP_CRM}folders/456", "gcp", "gcp:folder", "web", f"{GCP_CRM}organizations/123", {},
              "organizations/123"),
     f"gcloud resource-manager tags bindings create --tag-value=123/Environment/production --parent={GCP_CRM}"
     "folders/456"),
    (Resource("k8s://c1/persistentvolumes/pv-1", "kubernetes", "k8s:persistentvolumes", "pv-1"),
     "kubectl --context c1 label persistentvolumes pv-1 Environment=production --overwrite"),
    (Resource("k8s://c1", "kubernetes", "k8s:cluster", "c1"), None),
])
def test_commands_per_provider(resource: Resource, command: str | None) -> None:
    assert tag_command(resource, (("Environment", "production"),)) == command


def write_config(tmp_path: Path, query: Query) -> Path:
    store_url = f"sqlite:///{tmp_path / 'envlabel.db'}"
    path = tmp_path / "envlabel.yaml"
    path.write_text(json.dumps(CONFIG | {"store": store_url}))
    return path


def envlabel(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).parent / "envlabel")
    return subprocess.run([exe, *args], capture_output=True, text=True, check=False, timeout=60)


def test_cli_fail_on_is_a_ci_gate(query: Query, tmp_path: Path) -> None:
    config = str(write_config(tmp_path, query))
    failing = envlabel("audit", "--config", config, "--format", "json", "--fail-on", "high")
    assert failing.returncode == 1, failing.stderr
    assert "findings at or above high" in failing.stderr
    assert {r["kind"] for r in json.loads(failing.stdout)} >= {"conflict", "unlabeled", "stale"}
    passing = envlabel("audit", "--config", config, "--provider", "gcp", "--kind", "non-canonical",
                       "--fail-on", "medium")
    assert passing.returncode == 0, passing.stderr
    assert "LOW (1)" in passing.stdout and "1 finding(s): high 0, medium 0, low 1" in passing.stdout
    usage = envlabel("audit", "--config", config, "--kind", "mislabeled")
    assert usage.returncode == 2 and "mislabeled" in usage.stderr
    sarif = envlabel("audit", "--config", config, "--format", "sarif")
    assert sarif.returncode == 0 and json.loads(sarif.stdout)["version"] == "2.1.0"


def audit_of(resources: list[Resource]) -> list[tuple[str, str, str]]:
    """The pure rules on hand-built records: (target, kind, severity) of each finding."""
    from envlabel.labelers.findings import Auditor

    parents = {r.parent for r in resources}
    auditor = Auditor(TAX, {r.id: r for r in resources if r.id in parents}, {})
    for r in resources:
        auditor.add(r)
    return [(f.target, f.kind, f.severity) for f in auditor.findings()]


def test_unlabeled_inside_a_partly_labeled_container_is_reported_where_it_is() -> None:
    acct = Resource("777777777777", "aws", "aws:account", "mixed", None)
    tagged = Resource("arn:aws:s3:::a", "aws", "s3:bucket", "a", acct.id, {"Environment": "staging"})
    bare = Resource("arn:aws:s3:::b", "aws", "s3:bucket", "b", acct.id)
    vpc = Resource("arn:aws:ec2:us-east-1:777777777777:vpc/vpc-9", "aws", "ec2:vpc", "v", acct.id)
    boxes = [Resource(f"arn:aws:ec2:us-east-1:777777777777:instance/i-{n}", "aws", "ec2:instance", f"x{n}", vpc.id)
             for n in range(3)]
    # the account is reported on itself (tests/test_audit_containers.py has its note); what is unlabeled in it
    # keeps its own findings, and the VPC whose whole subtree is unlabeled is one finding
    assert audit_of([acct, tagged, bare, vpc, *boxes]) == [
        ("777777777777", "unlabeled", "high"),
        ("arn:aws:ec2:us-east-1:777777777777:vpc/vpc-9", "unlabeled", "high"),
        ("arn:aws:s3:::b", "unlabeled", "high")]


def test_name_mismatch_either_way() -> None:
    acct = Resource("888888888888", "aws", "aws:account", "team", None, {"Environment": "production"})
    dev_named = Resource("arn:aws:s3:::dev-scratch", "aws", "s3:bucket", "dev-scratch", acct.id)
    sbx = Resource("999999999999", "aws", "aws:account", "lab", None, {"Environment": "sandbox"})
    twin = Resource("arn:aws:s3:::orders-prod", "aws", "s3:bucket", "orders-prod", sbx.id)
    found = {t: (k, s) for t, k, s in audit_of([acct, dev_named, sbx, twin])}
    assert found == {"arn:aws:s3:::dev-scratch": ("name-mismatch", "high"),
                     "arn:aws:s3:::orders-prod": ("name-mismatch", "medium")}  # a sandbox twin: not high
    staging = Resource("111122223333", "aws", "aws:account", "stg", None, {"Environment": "staging"})
    qa_named = Resource("arn:aws:s3:::qa-data", "aws", "s3:bucket", "qa-data", staging.id)
    assert audit_of([staging, qa_named]) == [("arn:aws:s3:::qa-data", "name-mismatch", "low")]


@pytest.mark.parametrize("module", ["envlabel.labelers.findings", "envlabel.labelers.remediation", "envlabel.actions",
                                    "envlabel.service.core.errors"])
def test_docstring_examples_hold(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
