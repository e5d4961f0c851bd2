"""Denied regions, accounts and calls: the scan is incomplete, the rest is saved, nothing is removed or downgraded.

A real AccessDenied comes from tests/aws_denied.py, a loopback proxy in front
of moto answering in each service's own protocol; scans are committed into a
real SQLite file through the pipeline.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from envlabel.config import AwsSource, Config, config_from_dict
from envlabel.discovery.aws import AwsScanner
from envlabel.model import ScanResult
from envlabel.service.core.pipeline import ScanSummary, run_source
from envlabel.service.core.query import Query
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.aws_denied import (
    DeniedProxy,
    SignedRequest,
    deny_account,
    deny_operation,
    deny_region,
    only_first,
)
from tests.aws_estate import EstateInfo, fresh_estate


def allow_all(_: SignedRequest) -> bool:
    return False


@pytest.fixture(scope="module")
def estate(moto_url: str) -> EstateInfo:
    return fresh_estate(moto_url)


@pytest.fixture
def proxy(moto_url: str) -> Any:
    with DeniedProxy(moto_url, allow_all) as running:
        yield running


@pytest.fixture(scope="module")
def baseline(estate: EstateInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file holding one complete scan of the untouched estate; each test scans a copy of it."""
    path = tmp_path_factory.mktemp("baseline") / "envlabel.db"
    config = config_from_dict({"store": f"sqlite:///{path}", "sources": [estate.source()]})
    store = open_store(config.store)
    assert scan(config, store).complete
    store.close()
    return path


def setup_store(estate: EstateInfo, baseline: Path, endpoint_url: str, tmp_path: Path,
                **source: Any) -> tuple[Config, Store, Query]:
    """A copy of the baseline store, and a config scanning the estate through ``endpoint_url``."""
    shutil.copy(baseline, tmp_path / "envlabel.db")
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}",
                               "sources": [estate.source(endpoint_url=endpoint_url, **source)]})
    store = open_store(config.store)
    return config, store, Query(config, store)


def scan(config: Config, store: Store) -> ScanSummary:
    return run_source(config, store, config.sources[0])


def member_client(estate: EstateInfo, name: str, service: str, region: str) -> Any:
    sts = boto3.client("sts", region_name="us-east-1", endpoint_url=estate.endpoint_url)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{estate.accounts[name]}:role/{estate.role}",
                            RoleSessionName="test")["Credentials"]
    return boto3.client(service, region_name=region, endpoint_url=estate.endpoint_url,  # type: ignore[call-overload]
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


def test_denied_region_keeps_its_resources_and_saves_the_rest(estate: EstateInfo, baseline: Path,
                                                              proxy: DeniedProxy, tmp_path: Path) -> None:
    config, store, query = setup_store(estate, baseline, proxy.url, tmp_path)
    eu_api, legacy_app = estate.arns["payments-eu/payments-api"], estate.arns["legacy-7/legacy-app"]
    before = query.label(eu_api)
    assert (before["found"], before["environment"]) == (True, "production")
    assert query.label(legacy_app)["environment"] == "unknown"

    # the estate changes in both regions, then eu-west-1 starts answering AccessDenied
    payments_ec2 = member_client(estate, "payments-eu", "ec2", "eu-west-1")
    payments_ec2.terminate_instances(InstanceIds=[eu_api.rsplit("/", 1)[1]])
    [gone] = payments_ec2.describe_instances(InstanceIds=[eu_api.rsplit("/", 1)[1]])["Reservations"][0]["Instances"]
    assert gone["State"]["Name"] == "terminated"
    member_client(estate, "legacy-7", "ec2", "us-east-1").create_tags(
        Resources=[legacy_app.rsplit("/", 1)[1]], Tags=[{"Key": "Environment", "Value": "dev"}])
    proxy.deny = deny_region("eu-west-1")
    partial = scan(config, store)

    assert not partial.complete and partial.removed == 0
    assert {e.scope for e in partial.errors} == {f"{a}/eu-west-1" for a in estate.accounts.values()}
    assert all("ec2:Describe" in e.message and "grant ec2:Describe" in e.hint for e in partial.errors)
    assert all(r.region == "eu-west-1" for r in proxy.denied)
    kept = query.label(eu_api)  # terminated, but the scan that would have seen that was denied
    assert (kept["found"], kept["environment"], kept["evidence"]) == (True, "production", before["evidence"])
    assert query.label(estate.arns["orders-prod/orders-api-eu"])["environment"] == "production"
    assert query.label(legacy_app)["environment"] == "sandbox"  # us-east-1 was saved


def test_unreadable_account_tags_keep_the_old_account_record(estate: EstateInfo, baseline: Path,
                                                             proxy: DeniedProxy, tmp_path: Path) -> None:
    config, store, query = setup_store(estate, baseline, proxy.url, tmp_path, regions=["us-east-1"])
    staging = estate.accounts["orders-staging"]
    proxy.deny = deny_operation("ListTagsForResource", body_contains=staging)

    seen: list[ScanResult] = []

    def scan_and_keep(source: Any) -> ScanResult:
        seen.append(AwsScanner(source).scan())
        return seen[-1]

    summary = run_source(config, store, config.sources[0], scan=scan_and_keep)
    [result] = seen
    assert staging not in {r.id for r in result.resources}  # never emitted tagless
    assert [e.scope for e in result.errors] == ["organization"] and staging in result.errors[0].message
    assert "organization" not in result.scopes
    assert f"{staging}/us-east-1" in result.scopes  # its resources are still scanned
    assert not summary.complete and summary.removed == 0
    account = query.label(staging)
    assert (account["environment"], account["decided_by"]) == ("staging", "tag")  # Stage=UAT still stands
    assert query.label(estate.arns["orders-staging/orders-db"])["environment"] == "staging"


def test_assume_role_failure_is_that_accounts_error(estate: EstateInfo, baseline: Path, proxy: DeniedProxy,
                                                    tmp_path: Path) -> None:
    config, store, query = setup_store(estate, baseline, proxy.url, tmp_path, regions=["us-east-1"])
    dev = estate.accounts["dev-playground"]
    proxy.deny = deny_operation("AssumeRole", body_contains=dev)
    summary = scan(config, store)
    assert not summary.complete and summary.removed == 0
    [error] = summary.errors
    assert error.scope == dev and "could not assume" in error.message and "AccessDenied" in error.message
    assert f"arn:aws:iam::{dev}:role/{estate.role}" in error.hint
    assert query.label(estate.arns["dev-playground/scratch"])["environment"] == "sandbox"


def test_account_denied_everywhere_fails_only_its_scopes(estate: EstateInfo, proxy: DeniedProxy) -> None:
    payments = estate.accounts["payments-eu"]
    proxy.deny = deny_account(payments)  # the proxy learned its access key from the AssumeRole answer
    source = AwsSource.model_validate(estate.source(endpoint_url=proxy.url, regions=["us-east-1"]))
    result = AwsScanner(source).scan()
    assert {e.scope for e in result.errors} == {f"{payments}/us-east-1", f"{payments}/global"}
    assert "arn:aws:iam::" in result.errors[0].hint and "EnvlabelReadOnly" in result.errors[0].hint
    assert payments in {r.id for r in result.resources}  # the org tree is read with the scanner's own credentials
    assert "organization" in result.scopes and len(result.scopes) == 1 + 2 * (len(estate.accounts) - 1)


@pytest.mark.parametrize(("service", "action"), [
    ("rds", "rds:DescribeDBInstances"),  # query protocol, XML
    ("eks", "eks:ListClusters"),  # REST-JSON
    ("lambda", "lambda:ListFunctions"),  # REST-JSON
    ("dynamodb", "dynamodb:ListTables"),  # JSON 1.0
    ("tagging", "tag:GetResources"),  # JSON 1.1
])
def test_each_protocols_denial_names_the_action(estate: EstateInfo, proxy: DeniedProxy, service: str,
                                                action: str) -> None:
    proxy.deny = lambda request: request.service == service
    source = AwsSource.model_validate(estate.source(endpoint_url=proxy.url, organization=False,
                                                    regions=["us-east-1"]))
    result = AwsScanner(source).scan()
    [error] = result.errors
    assert error.scope == f"{estate.management}/us-east-1" and action in error.message
    assert f"grant {action}" in error.hint
    assert not [r for r in result.resources if r.scope == error.scope]  # a region is all or nothing
    assert f"{estate.management}/global" in result.scopes


def test_throttling_is_retried_and_only_exhausted_retries_fail(estate: EstateInfo, proxy: DeniedProxy) -> None:
    source = AwsSource.model_validate(estate.source(endpoint_url=proxy.url, organization=False,
                                                    regions=["us-east-1"]))
    proxy.throttle = only_first(2, lambda r: r.operation == "DescribeVpcs")
    assert AwsScanner(source).scan().complete
    assert len(proxy.throttled) == 2

    # the region's own GetResources (the buckets' tagging index, filtered to S3, falls back per bucket instead)
    proxy.throttle = lambda r: r.operation == "GetResources" and b"ResourceTypeFilters" not in r.body
    [error] = AwsScanner(source, retries=1).scan().errors
    assert "ThrottlingException" in error.message and "throttling" in error.hint
    assert len(proxy.throttled) == 2 + 2  # the call and its one retry


def test_unreadable_bucket_is_skipped_not_emitted_tagless(estate: EstateInfo, proxy: DeniedProxy) -> None:
    # neither the tagging index (GetResources filtered to S3) nor the bucket's own GetBucketTagging answers
    proxy.deny = lambda r: (r.operation == "GetResources" and b"ResourceTypeFilters" in r.body) or (
        r.service == "s3" and r.path.startswith("/org-audit-trail") and "tagging" in r.path)
    source = AwsSource.model_validate(estate.source(endpoint_url=proxy.url, organization=False,
                                                    regions=["us-east-1"]))
    result = AwsScanner(source).scan()
    assert "arn:aws:s3:::org-audit-trail" not in {r.id for r in result.resources}
    [error] = result.errors
    assert error.scope == f"{estate.management}/global" and "s3:GetBucketTagging" in error.hint


def test_cli_scan_and_get(estate: EstateInfo, proxy: DeniedProxy, tmp_path: Path) -> None:
    exe = str(Path(sys.executable).parent / "envlabel")

    def envlabel(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args, "--config", str(config)], capture_output=True, text=True, timeout=120,
                              check=False)

    store = f"sqlite:///{tmp_path / 'cli.db'}"
    direct, denied = tmp_path / "direct.yaml", tmp_path / "denied.yaml"
    direct.write_text(yaml.safe_dump({"store": store, "sources": [estate.source()]}))
    denied.write_text(yaml.safe_dump({"store": store, "sources": [estate.source(endpoint_url=proxy.url)]}))

    ok = envlabel(direct, "scan")
    assert ok.returncode == 0, ok.stderr
    proxy.deny = deny_region("eu-west-1")
    failed = envlabel(denied, "scan")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "INCOMPLETE" in failed.stdout and "eu-west-1" in failed.stdout and "removed 0" in failed.stdout
    got = envlabel(denied, "get", estate.arns["orders-prod/orders-db"], "--json")
    assert got.returncode == 0, got.stderr
    body = json.loads(got.stdout)
    assert (body["environment"], body["conflict"], body["kind"]) == ("production", True, "rds:db")
