"""A container with no signal of its own that holds labeled resources is reported on itself (issue 18, item 1).

Such a container stays ``unknown``, so every check treats it as production, and before this nothing named it: only
its untagged children were reported. Each estate is committed through the real scan pipeline into a real SQLite
file and audited with :func:`envlabel.service.core.audit.findings`, the function behind the CLI, the API and MCP.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from envlabel.config import config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource, ScanResult
from envlabel.service.core.audit import findings
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.core.query import Query
from envlabel.store import open_store
from envlabel.targets import GCP_CRM

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)
TAX = Taxonomy()
ACCOUNT = "222222222222"
ROOT = "arn:aws:organizations::111111111111:root/o-abc123/r-ab12"


def account(number: str, name: str, parent: str | None = None, tags: dict[str, str] | None = None) -> Resource:
    return Resource(number, "aws", "aws:account", name, parent, tags or {}, "org")


def bucket(name: str, parent: str, tags: dict[str, str] | None = None) -> Resource:
    return Resource(f"arn:aws:s3:::{name}", "aws", "s3:bucket", name, parent, tags or {}, f"{parent}/us-east-1",
                    region="us-east-1")


def orders_estate(account_tags: dict[str, str] | None = None) -> list[Resource]:
    """An account with no tag of its own: one bucket tagged production, one staging, one bare, and a bare VPC
    with three instances."""
    vpc = Resource(f"arn:aws:ec2:us-east-1:{ACCOUNT}:vpc/vpc-1", "aws", "ec2:vpc", "main", ACCOUNT, {},
                   f"{ACCOUNT}/us-east-1", region="us-east-1")
    boxes = [Resource(f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/i-{n}", "aws", "ec2:instance", f"web-{n}", vpc.id,
                      {}, f"{ACCOUNT}/us-east-1", region="us-east-1") for n in range(3)]
    return [account(ACCOUNT, "orders", tags=account_tags),
            bucket("orders-data", ACCOUNT, {"Environment": "production"}),
            bucket("orders-copy", ACCOUNT, {"Environment": "staging"}),
            bucket("orders-misc", ACCOUNT), vpc, *boxes]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'envlabel.db'}"


@pytest.fixture
def audit(store_url: str) -> Iterator[Any]:
    """``audit(resources)``: commit them as one complete scan of source ``aws`` and return the findings by target."""
    store = open_store(store_url)
    query = Query(config_from_dict({"store": store_url, "sources": [{"name": "aws", "type": "aws"}]}), store)
    scans = iter(range(1, 100))

    def run(resources: list[Resource]) -> dict[str, list[dict[str, Any]]]:
        at = T0 + timedelta(seconds=next(scans))
        commit_scan(store, TAX, ScanResult("aws", resources, scopes=frozenset(r.scope for r in resources)), at, at)
        found: dict[str, list[dict[str, Any]]] = {}
        for row in findings(query, now=NOW):
            found.setdefault(row["target"], []).append(row)
        return found

    yield run
    store.close()


def test_an_account_whose_resources_carry_tags_is_reported_on_itself_with_the_fix(audit: Any) -> None:
    found = audit(orders_estate())
    [finding] = found[ACCOUNT]
    assert (finding["kind"], finding["severity"], finding["environment"]) == ("unlabeled", "high", "production")
    assert "agents must treat it as production" in finding["message"]
    # the note names what already says another environment than the suggested one, and only that
    assert "1 resource(s) already say staging: s3:bucket orders-copy (arn:aws:s3:::orders-copy)" \
        in finding["message"]
    assert "orders-data" not in finding["message"]
    fix = finding["remediation"]
    assert fix["tags"] == {"environment": "production"}
    assert fix["command"] == f"aws organizations tag-resource --resource-id {ACCOUNT} --tags Key=environment," \
                             "Value=production"
    assert "the 5 unlabeled resource(s) in it inherit the tag" in fix["text"]  # the bare bucket, the VPC, 3 boxes
    assert "those saying staging become conflicts labeled production" in fix["text"]
    # what is unlabeled in it keeps its own finding: it may be another environment than the account
    assert [r["kind"] for r in found["arn:aws:s3:::orders-misc"]] == ["unlabeled"]
    assert [r["kind"] for r in found[f"arn:aws:ec2:us-east-1:{ACCOUNT}:vpc/vpc-1"]] == ["unlabeled"]


def test_the_fix_does_what_its_note_says(audit: Any) -> None:
    [finding] = audit(orders_estate())[ACCOUNT]
    found = audit(orders_estate(account_tags=finding["remediation"]["tags"]))  # the tag set, then a rescan
    assert ACCOUNT not in found
    assert not any(r["kind"] == "unlabeled" for rows in found.values() for r in rows)  # everything inherits it
    # the resource the note named is now the conflict it said it would be
    [conflict] = found["arn:aws:s3:::orders-copy"]
    assert (conflict["kind"], conflict["environment"]) == ("conflict", "production")


def test_when_everything_labeled_in_it_agrees_the_fix_offers_that_environment(audit: Any) -> None:
    lab = [account("333333333333", "research"), bucket("scratch-1", "333333333333", {"env": "sandbox"}),
           bucket("scratch-2", "333333333333", {"env": "sandbox"})]
    [finding] = audit(lab)["333333333333"]
    assert finding["remediation"]["tags"] == {"environment": "production"}  # fail-safe: the most restrictive
    assert "2 resource(s) already say sandbox" in finding["message"]
    assert "if it is sandbox, as everything labeled in it says, set environment=sandbox instead" \
        in finding["remediation"]["text"]


def test_a_name_that_says_the_environment_is_the_suggestion_and_nothing_disagrees(audit: Any) -> None:
    dev = [account("444444444444", "payments-dev"), bucket("payments-dev-logs", "444444444444", {"env": "sandbox"})]
    [finding] = audit(dev)["444444444444"]
    assert (finding["environment"], finding["remediation"]["tags"]) == ("sandbox", {"environment": "sandbox"})
    assert "already say" not in finding["message"]


def test_the_organization_root_is_not_reported_but_an_ou_is(audit: Any) -> None:
    root = Resource(ROOT, "aws", "aws:root", "Root", None, {}, "org", path="/Root")
    prod = Resource("arn:aws:organizations::111111111111:ou/o-abc123/ou-ab12-prod0001", "aws", "aws:ou",
                    "Production", ROOT, {}, "org", name_signal=True, path="/Root/Production")
    workloads = Resource("arn:aws:organizations::111111111111:ou/o-abc123/ou-ab12-work0001", "aws", "aws:ou",
                         "Workloads", ROOT, {}, "org", name_signal=True, path="/Root/Workloads")
    accounts = [account("555555555555", "shop", prod.id), account("666666666666", "lab", workloads.id,
                                                                    {"Environment": "sandbox"})]
    found = audit([root, prod, workloads, *accounts])
    assert ROOT not in found  # it holds every environment by design: no one tag labels it
    [ou] = found[workloads.id]
    assert (ou["kind"], ou["severity"]) == ("unlabeled", "high")
    assert ou["remediation"]["command"] == ("aws organizations tag-resource --resource-id ou-ab12-work0001 --tags "
                                            "Key=environment,Value=production")
    assert "aws:account lab (666666666666)" in ou["message"]


def test_gcp_folders_and_projects_and_kubernetes_namespaces_get_their_own_commands(audit: Any) -> None:
    org = Resource(f"{GCP_CRM}organizations/123", "gcp", "gcp:organization", "example.com", None, {},
                   "organizations/123")
    folder = Resource(f"{GCP_CRM}folders/9", "gcp", "gcp:folder", "teams", org.id, {}, "organizations/123")
    project = Resource(f"{GCP_CRM}projects/web", "gcp", "gcp:project", "web", folder.id, {}, "organizations/123")
    labeled = Resource("//storage.googleapis.com/projects/_/buckets/web-assets", "gcp", "storage.Bucket",
                       "web-assets", project.id, {"environment": "staging"}, "organizations/123")
    cluster = Resource("k8s://ops", "kubernetes", "k8s:cluster", "ops", None, {}, "ops")
    namespace = Resource("k8s://ops/namespaces/tools", "kubernetes", "k8s:namespaces", "tools", cluster.id, {},
                         "ops")
    deployment = Resource("k8s://ops/tools/deployments/runner", "kubernetes", "k8s:deployments", "runner",
                          namespace.id, {"environment": "staging"}, "ops")
    found = audit([org, folder, project, labeled, cluster, namespace, deployment])
    assert org.id not in found
    commands = {target: rows[0]["remediation"]["command"] for target, rows in found.items()}
    assert commands == {
        folder.id: f"gcloud resource-manager tags bindings create --tag-value=123/environment/production "
                   f"--parent={folder.id}",
        project.id: "gcloud projects update web --update-labels=environment=production",
        namespace.id: "kubectl --context ops label namespace tools environment=production --overwrite",
        cluster.id: None,  # a cluster's environment is configuration
    }
    assert "on its source in the configuration" in found[cluster.id][0]["remediation"]["text"]
    assert all(rows[0]["kind"] == "unlabeled" and "1 resource(s) already say staging" in rows[0]["message"]
               for rows in found.values())


def test_an_unrecognized_tag_on_such_a_container_is_one_finding_carrying_the_note(audit: Any) -> None:
    found = audit(orders_estate(account_tags={"Environment": "nonprod"}))
    [finding] = found[ACCOUNT]
    assert (finding["kind"], finding["severity"]) == ("unrecognized", "high")
    assert "1 resource(s) already say staging" in finding["message"]
    assert finding["remediation"]["tags"] == {"Environment": "production"}
