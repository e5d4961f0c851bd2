"""The AWS scanner against a real moto server holding a realistic organization (tests/aws_estate.py).

The estate is built once per module and only read; every botocore call the
scanner makes is recorded through botocore's own event system.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import envlabel.discovery.aws
from envlabel.config import AwsSource, config_from_dict
from envlabel.discovery.aws import AwsScanner, Credentials, SessionFactory, make_sessions
from envlabel.discovery.aws.calls import iam_action
from envlabel.model import ScanResult
from envlabel.service.core.pipeline import run_source
from envlabel.service.core.query import Query
from envlabel.store import open_store
from tests.aws_estate import ACCOUNTS, OUS, EstateInfo, fresh_estate

POLICY = Path(envlabel.discovery.aws.__file__).parent / "iam-policy.json"


@dataclass(frozen=True)
class Call:
    session: str  # "own" or the assumed access key
    region: str
    service: str
    operation: str


def recording(calls: list[Call]) -> SessionFactory:
    """Real sessions whose every call is recorded by a botocore before-call hook (instrumenting the library)."""
    base = make_sessions()

    def make(credentials: Credentials | None) -> Any:
        session = base(credentials)
        who = credentials.access_key if credentials else "own"

        def record(model: Any, request_signer: Any, **_: Any) -> None:
            calls.append(Call(who, request_signer.region_name, model.service_model.service_name, model.name))

        session.events.register("before-call", record)
        return session

    return make


@pytest.fixture(scope="module")
def estate(moto_url: str) -> EstateInfo:
    return fresh_estate(moto_url)


@pytest.fixture(scope="module")
def scanned(estate: EstateInfo) -> tuple[ScanResult, list[Call]]:
    calls: list[Call] = []
    source = AwsSource.model_validate(estate.source())
    return AwsScanner(source, session_factory=recording(calls)).scan(), calls


@pytest.fixture(scope="module")
def records(scanned: tuple[ScanResult, list[Call]]) -> dict[str, Any]:
    return {r.id: r for r in scanned[0].resources}


def test_scan_is_complete_over_every_scope(scanned: tuple[ScanResult, list[Call]], estate: EstateInfo) -> None:
    result, _ = scanned
    assert result.errors == [] and result.complete
    expected = {"organization"} | {f"{a}/{r}" for a in estate.accounts.values() for r in (*estate.regions, "global")}
    assert result.scopes == expected
    assert len({r.id for r in result.resources}) == len(result.resources)


def test_organization_tree(records: dict[str, Any], estate: EstateInfo) -> None:
    root = records[estate.root]
    assert (root.kind, root.name, root.parent, root.scope) == ("aws:root", "Root", None, "organization")
    for path, tags in OUS.items():
        ou = records[estate.ous[path]]
        parent_path = path.rpartition("/")[0]
        assert (ou.kind, ou.path, ou.name, ou.name_signal, dict(ou.tags)) == (
            "aws:ou", path, path.rpartition("/")[2], True, tags)
        assert ou.parent == (estate.root if parent_path == "/Root" else estate.ous[parent_path])
    for name, (path, tags) in ACCOUNTS.items():
        account = records[estate.accounts[name]]
        assert (account.kind, account.name, dict(account.tags)) == ("aws:account", name, tags)
        assert account.parent == (estate.root if path == "/Root" else estate.ous[path])
        assert account.aliases[0].startswith("arn:aws:organizations::") and account.aliases[0].endswith(account.id)
    management = records[estate.management]
    assert management.parent == estate.root and dict(management.tags) == {"Environment": "production"}


def test_resources_ids_kinds_and_topology(records: dict[str, Any], estate: EstateInfo) -> None:
    prod, arn = estate.accounts["orders-prod"], estate.arns
    vpc = records[arn["orders-prod/orders-prod-vpc"]]
    assert (vpc.kind, vpc.name, vpc.parent, vpc.scope, vpc.region) == (
        "ec2:vpc", "orders-prod-vpc", prod, f"{prod}/us-east-1", "us-east-1")
    expected = {  # key -> (kind, name, parent: "vpc" or "account")
        "orders-api": ("ec2:instance", "orders-api", "vpc"),
        "orders-prod-vpc-sg": ("ec2:security-group", "orders-prod-vpc-sg", "vpc"),
        "orders-db": ("rds:db", "orders-db", "vpc"),
        "orders-worker": ("lambda:function", "orders-worker", "vpc"),
        "orders-aurora": ("rds:cluster", "orders-aurora", "account"),
        "orders": ("eks:cluster", "orders", "account"),
        "orders-sessions": ("dynamodb:table", "orders-sessions", "account"),
        "orders-prod-assets": ("s3:bucket", "orders-prod-assets", "account"),
    }
    for key, (kind, name, parent) in expected.items():
        r = records[arn[f"orders-prod/{key}"]]
        assert (r.kind, r.name, r.parent) == (kind, name, vpc.id if parent == "vpc" else prod), key
    subnets = [r for r in records.values() if r.kind == "ec2:subnet" and r.parent == vpc.id]
    assert sorted(s.name for s in subnets) == ["orders-prod-vpc-a", "orders-prod-vpc-b"]
    assert dict(records[arn["orders-prod/orders-db"]].tags) == {"Environment": "sandbox"}
    assert dict(records[arn["orders-prod/orders-worker"]].tags) == {"team": "orders"}  # from the tagging API
    bucket = records[arn["dev-playground/dev-playground-eu"]]
    assert (bucket.region, bucket.scope) == ("eu-west-1", f"{estate.accounts['dev-playground']}/global")
    queue = records[arn["payments-eu/payments-events"]]  # only the tagging API knows it
    assert (queue.kind, queue.parent, dict(queue.tags)) == ("sqs:queue", estate.accounts["payments-eu"],
                                                            {"env": "prod"})


def test_twins_are_distinct_records(records: dict[str, Any], estate: EstateInfo) -> None:
    prod, staging = records[estate.arns["orders-prod/orders-db"]], records[estate.arns["orders-staging/orders-db"]]
    assert prod.name == staging.name == "orders-db" and prod.id != staging.id
    assert prod.scope.split("/")[0] == estate.accounts["orders-prod"]
    assert staging.scope.split("/")[0] == estate.accounts["orders-staging"]


def test_walk_is_top_down_and_calls_are_read_only(scanned: tuple[ScanResult, list[Call]]) -> None:
    _, calls = scanned
    operations = Counter(c.operation for c in calls)
    assert "ListParents" not in operations
    parents = 1 + len(OUS)  # the root and every OU are listed once each
    assert operations["ListAccountsForParent"] == parents == operations["ListOrganizationalUnitsForParent"]
    assert operations["ListTagsForResource"] == 1 + len(OUS) + len(ACCOUNTS) + 1  # root, OUs, accounts, management
    assert operations["AssumeRole"] == len(ACCOUNTS)  # every member once; the management account uses its own
    print_call_counts(calls)


def test_iam_policy_covers_exactly_what_is_called(scanned: tuple[ScanResult, list[Call]]) -> None:
    _, calls = scanned
    statements = json.loads(POLICY.read_text())["Statement"]
    granted = {action for s in statements for action in s["Action"]}
    assert all(s["Effect"] == "Allow" for s in statements)
    called = {iam_action(c.service, c.operation) for c in calls}
    assert called <= granted, f"called but not granted: {sorted(called - granted)}"
    assert granted == set(envlabel.discovery.aws.PERMISSIONS), "iam-policy.json and the modules' PERMISSIONS differ"
    verbs = {a.split(":")[1] for a in granted - {"sts:AssumeRole"}}
    assert all(v.startswith(("Describe", "List", "Get")) for v in verbs), f"not read-only: {verbs}"
    [assume] = [s for s in statements if "sts:AssumeRole" in s["Action"]]
    assert assume["Action"] == ["sts:AssumeRole"] and assume["Resource"] != "*"


def test_labels_end_to_end(scanned: tuple[ScanResult, list[Call]], estate: EstateInfo, tmp_path: Path) -> None:
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}", "sources": [estate.source()]})
    store = open_store(config.store)
    summary = run_source(config, store, config.sources[0], scan=lambda _: scanned[0])
    assert summary.complete and summary.removed == 0
    query = Query(config, store)

    def label(target: str) -> dict[str, Any]:
        body = query.label(target)
        assert body["found"], target
        return body

    arn, accounts = estate.arns, estate.accounts
    # an OU named Production: its accounts and everything below inherit production
    api = label(arn["orders-prod/orders-api"])
    assert (api["environment"], api["decided_by"], api["conflict"]) == ("production", "inherited", False)
    assert any("/Root/Production" in e["detail"] for e in api["evidence"])
    assert label(accounts["payments-eu"])["environment"] == "production"  # untagged, under Prod-EU and Production
    assert label(arn["payments-eu/payments-api"])["environment"] == "production"
    # messy tags normalized
    assert label(accounts["orders-staging"])["environment"] == "staging"  # Stage=UAT
    assert label(accounts["dev-playground"])["environment"] == "sandbox"  # ENV=dev under OU Sandbox
    assert label(arn["dev-playground/scratch"])["environment"] == "sandbox"  # env=test on a Lambda
    ledger = label(arn["payments-eu/payments-ledger"])  # env=prd-eu
    assert (ledger["environment"], ledger["conflict"]) == ("production", False)
    # a tag that contradicts its place: most restrictive wins, flagged
    db = label(arn["orders-prod/orders-db"])
    assert (db["environment"], db["conflict"], db["decided_by"]) == ("production", True, "inherited")
    assert {e["signal"] for e in db["evidence"]} >= {"tag", "inherited"}
    bastion = label(arn["shared-services/bastion"])  # staging tag inside a VPC tagged env=prod
    assert (bastion["environment"], bastion["conflict"]) == ("production", True)
    # no signal at all: unknown (the check treats it as production)
    for target in (accounts["legacy-7"], arn["legacy-7/legacy-app"], accounts["shared-services"]):
        body = label(target)
        assert (body["environment"], body["decided_by"], body["authoritative"]) == ("unknown", "none", False), target
    # identical twins told apart by their account
    assert label(arn["orders-prod/orders-db"])["name"] == label(arn["orders-staging/orders-db"])["name"]
    assert label(arn["orders-staging/orders-db"])["environment"] == "staging"
    # an account ARN names the account
    account_arn = next(r.aliases[0] for r in scanned[0].resources if r.id == accounts["orders-prod"])
    assert label(account_arn)["environment"] == "production"


def test_organization_false_scans_only_the_own_account(estate: EstateInfo) -> None:
    calls: list[Call] = []
    source = AwsSource.model_validate(estate.source(
        organization=False, regions=["us-east-1"], account_environments={estate.management: "production"}))
    result = AwsScanner(source, session_factory=recording(calls)).scan()
    assert result.complete and result.scopes == {estate.management, f"{estate.management}/us-east-1",
                                                 f"{estate.management}/global"}
    account = next(r for r in result.resources if r.kind == "aws:account")
    assert (account.id, account.declared, account.parent) == (estate.management, "production", None)
    assert {r.scope.split("/")[0] for r in result.resources} == {estate.management}
    assert not {c.service for c in calls} & {"organizations"} and not any(c.operation == "AssumeRole" for c in calls)


def print_call_counts(calls: list[Call]) -> None:
    """API calls per scope, for the benchmark comparison (visible with pytest -s)."""
    scopes: dict[tuple[str, str], Counter[str]] = {}
    for c in calls:
        region = "organization" if c.service == "organizations" else "global" if c.service in ("s3", "sts") \
            else c.region
        scopes.setdefault((c.session, region), Counter())[f"{c.service}:{c.operation}"] += 1
    for (session, region), ops in sorted(scopes.items()):
        who = "own" if session == "own" else f"member {session[:8]}"
        print(f"{who:<16} {region:<12} {sum(ops.values()):>3} calls: "
              + ", ".join(f"{op} {n}" for op, n in sorted(ops.items())))
    print(f"total calls: {len(calls)}")
