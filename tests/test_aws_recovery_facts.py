"""Recovery facts read by the AWS scanner from a real moto server: RDS snapshots and protection, S3 versioning,
object lock and lifecycle, DynamoDB PITR and backups, EC2 termination protection and EBS volumes, Lambda
versions, KMS deletion; a denied fact call leaves the scan complete with that key unreadable; facts are stored.

One account (moto's default), one region, built once per module and only read.
"""

from __future__ import annotations

import io
import json
import urllib.request
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest

from envlabel.config import AwsSource, config_from_dict
from envlabel.discovery.aws import AwsScanner
from envlabel.discovery.aws.calls import iam_action
from envlabel.model import Resource, ScanResult
from envlabel.service.core.pipeline import run_source
from envlabel.service.core.query import Query
from envlabel.store import open_store
from tests.aws_denied import DeniedProxy, SignedRequest
from tests.test_aws_scan import POLICY, Call, recording

ACCOUNT = "123456789012"
REGION = "us-east-1"


def source(endpoint_url: str, **overrides: Any) -> AwsSource:
    return AwsSource.model_validate({"name": "aws", "type": "aws", "endpoint_url": endpoint_url,
                                     "regions": [REGION], **overrides})


def build(url: str) -> dict[str, str]:
    """The cases, each under a name; returns name -> the id the scanner gives it (or the raw id)."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass

    def client(service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=url)  # type: ignore[call-overload]

    ids: dict[str, str] = {}
    rds = client("rds")
    for name, extra in (("orders-db", {"BackupRetentionPeriod": 0}),
                        ("orders-db-snapped", {"BackupRetentionPeriod": 0}),
                        ("protected-db", {"BackupRetentionPeriod": 7, "DeletionProtection": True})):
        db = rds.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
                                    MasterUsername="admin", MasterUserPassword="not-a-secret-1",
                                    AllocatedStorage=20, **extra)["DBInstance"]
        ids[name] = db["DBInstanceArn"]
    ids["manual-snapshot"] = rds.create_db_snapshot(DBSnapshotIdentifier="before-migration",
                                                    DBInstanceIdentifier="orders-db-snapped")["DBSnapshot"][
        "DBSnapshotArn"]
    cluster = rds.create_db_cluster(DBClusterIdentifier="orders-aurora", Engine="aurora-postgresql",
                                    MasterUsername="admin", MasterUserPassword="not-a-secret-1",
                                    BackupRetentionPeriod=3, DeletionProtection=True)["DBCluster"]
    ids["orders-aurora"] = cluster["DBClusterArn"]

    s3 = client("s3")
    for bucket in ("plain-bucket", "versioned-bucket", "expiring-bucket"):
        s3.create_bucket(Bucket=bucket)
        ids[bucket] = f"arn:aws:s3:::{bucket}"
    s3.create_bucket(Bucket="locked-bucket", ObjectLockEnabledForBucket=True)
    ids["locked-bucket"] = "arn:aws:s3:::locked-bucket"
    s3.put_bucket_versioning(Bucket="versioned-bucket", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(Bucket="expiring-bucket", LifecycleConfiguration={"Rules": [
        {"ID": "a-week", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 7}},
        {"ID": "tmp", "Status": "Enabled", "Filter": {"Prefix": "tmp/"}, "Expiration": {"Days": 3}},
        {"ID": "off", "Status": "Disabled", "Filter": {"Prefix": "x/"}, "Expiration": {"Days": 1}}]})

    dynamodb = client("dynamodb")
    tables: tuple[tuple[str, dict[str, Any]], ...] = (("orders-sessions", {}),
                                                      ("orders-ledger", {"DeletionProtectionEnabled": True}))
    for name, extra in tables:
        ids[name] = dynamodb.create_table(
            TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], **extra)["TableDescription"][
            "TableArn"]
    dynamodb.update_continuous_backups(TableName="orders-ledger",
                                       PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    ids["ledger-backup"] = dynamodb.create_backup(TableName="orders-ledger", BackupName="nightly")[
        "BackupDetails"]["BackupArn"]

    ec2 = client("ec2")
    for name in ("guarded-api", "plain-api"):
        instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                     TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                         {"Key": "Name", "Value": name}]}])["Instances"][0]
        ids[f"{name}-id"] = instance["InstanceId"]
        ids[name] = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance['InstanceId']}"
    ec2.modify_instance_attribute(InstanceId=ids["guarded-api-id"], DisableApiTermination={"Value": True})
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=10)["VolumeId"]
    ids["spare-volume"] = f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/{volume}"
    ids["spare-snapshot"] = ec2.create_snapshot(VolumeId=volume, Description="manual")["SnapshotId"]

    kms = client("kms")
    doomed = kms.create_key(Description="old tokens")["KeyMetadata"]
    kms.schedule_key_deletion(KeyId=doomed["KeyId"], PendingWindowInDays=7)
    ids["doomed-key"] = doomed["Arn"]
    ids["live-key"] = kms.create_key(Description="orders")["KeyMetadata"]["Arn"]

    iam = client("iam")
    role = iam.create_role(RoleName="lambda-exec", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    for name, publish in (("orders-worker", True), ("scratch", False)):
        ids[name] = client("lambda").create_function(
            FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handler",
            Code={"ZipFile": code.getvalue()}, Publish=publish)["FunctionArn"]
    return ids


@pytest.fixture(scope="module")
def estate(moto_url: str) -> dict[str, str]:
    return build(moto_url)


@pytest.fixture(scope="module")
def scanned(estate: dict[str, str], moto_url: str) -> tuple[ScanResult, list[Call]]:
    calls: list[Call] = []
    return AwsScanner(source(moto_url), session_factory=recording(calls)).scan(), calls


@pytest.fixture(scope="module")
def records(scanned: tuple[ScanResult, list[Call]]) -> dict[str, Resource]:
    return {r.id: r for r in scanned[0].resources}


def test_rds_instances_and_clusters(records: dict[str, Resource], estate: dict[str, str]) -> None:
    unprotected = records[estate["orders-db"]].facts
    assert unprotected == {"deletion_protection": False, "backup_retention_days": 0, "latest_snapshot": None,
                           "read_replica_of": None, "cluster": None}  # moto's creation snapshot does not count
    snapped = records[estate["orders-db-snapped"]].facts["latest_snapshot"]
    assert (snapped["id"], snapped["kind"]) == (estate["manual-snapshot"], "manual")
    assert snapped["at"].endswith("Z") and "T" in snapped["at"]
    protected = records[estate["protected-db"]].facts
    assert (protected["deletion_protection"], protected["backup_retention_days"]) == (True, 7)
    assert protected["latest_snapshot"]["kind"] == "automated"
    cluster = records[estate["orders-aurora"]].facts
    assert (cluster["deletion_protection"], cluster["backup_retention_days"]) == (True, 3)
    assert cluster["latest_snapshot"]["id"].startswith(f"arn:aws:rds:{REGION}:{ACCOUNT}:cluster-snapshot:")


def test_buckets(records: dict[str, Resource], estate: dict[str, str]) -> None:
    def facts(name: str) -> dict[str, Any]:
        return dict(records[estate[name]].facts)

    assert facts("plain-bucket") == {"versioning": "Disabled", "object_lock": False, "replication": False,
                                     "expiration_days": None}
    assert facts("versioned-bucket") == {"versioning": "Enabled", "object_lock": False, "replication": False,
                                         "expiration_days": None}
    assert facts("locked-bucket")["versioning"] == "Enabled" and facts("locked-bucket")["object_lock"] is True
    assert facts("expiring-bucket")["expiration_days"] == 3  # the shortest enabled rule, not the disabled one


def test_tables(records: dict[str, Resource], estate: dict[str, str]) -> None:
    assert records[estate["orders-sessions"]].facts == {
        "deletion_protection": False, "point_in_time_recovery": False, "latest_backup": None}
    ledger = records[estate["orders-ledger"]].facts
    assert (ledger["deletion_protection"], ledger["point_in_time_recovery"]) == (True, True)
    assert (ledger["latest_backup"]["id"], ledger["latest_backup"]["kind"]) == (estate["ledger-backup"], "manual")


def test_instances_and_volumes(records: dict[str, Resource], estate: dict[str, str]) -> None:
    guarded, plain = records[estate["guarded-api"]].facts, records[estate["plain-api"]].facts
    assert (guarded["termination_protection"], plain["termination_protection"]) == (True, False)
    assert guarded["root_device"] == "ebs"
    [root] = guarded["volumes"]
    assert root["delete_on_termination"] is True
    root_volume = records[f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/{root['id']}"]
    # an attached volume hangs off its instance: it inherits the instance's environment
    assert (root_volume.kind, root_volume.parent) == ("ec2:volume", estate["guarded-api"])
    assert root_volume.facts == {"attached_to": estate["guarded-api"], "latest_snapshot": None}
    spare = records[estate["spare-volume"]]
    assert (spare.parent, spare.facts["attached_to"]) == (ACCOUNT, None)
    assert (spare.facts["latest_snapshot"]["id"], spare.facts["latest_snapshot"]["kind"]) == (
        estate["spare-snapshot"], "manual")


def test_keys_and_functions(records: dict[str, Resource], estate: dict[str, str]) -> None:
    doomed, live = records[estate["doomed-key"]], records[estate["live-key"]]
    assert (doomed.kind, doomed.parent, doomed.facts["state"]) == ("kms:key", ACCOUNT, "PendingDeletion")
    assert doomed.facts["pending_deletion_days"] == 7 and doomed.facts["deletion_date"].endswith("Z")
    assert live.facts == {"state": "Enabled", "pending_deletion_days": None, "deletion_date": None}
    assert records[estate["orders-worker"]].facts == {"published_versions": 1}
    assert records[estate["scratch"]].facts == {"published_versions": 0}


def test_calls_are_batched_by_region_and_granted(scanned: tuple[ScanResult, list[Call]]) -> None:
    result, calls = scanned
    assert result.complete
    operations = Counter(c.operation for c in calls)
    for per_region in ("DescribeDBSnapshots", "DescribeDBClusterSnapshots", "DescribeSnapshots", "ListBackups",
                       "DescribeVolumes", "ListKeys"):
        assert operations[per_region] == 1, per_region
    instances = sum(1 for r in result.resources if r.kind == "ec2:instance")
    assert operations["DescribeInstanceAttribute"] == instances == 2
    # object lock and replication are asked only of the versioned buckets
    assert operations["GetObjectLockConfiguration"] == operations["GetBucketReplication"] == 2
    granted = {a for s in json.loads(POLICY.read_text())["Statement"] for a in s["Action"]}
    called = {iam_action(c.service, c.operation) for c in calls}
    assert called <= granted, f"called but not granted: {sorted(called - granted)}"


def test_recovery_facts_false_is_the_scan_without_them(estate: dict[str, str], moto_url: str,
                                                        scanned: tuple[ScanResult, list[Call]]) -> None:
    calls: list[Call] = []
    result = AwsScanner(source(moto_url, recovery_facts=False), session_factory=recording(calls)).scan()
    assert result.complete and all(not r.facts for r in result.resources)
    # volumes and keys are only what the tagging API gives (moto's gives untagged ones too), on the account
    assert {r.parent for r in result.resources if r.kind in ("ec2:volume", "kms:key")} <= {ACCOUNT}
    facts_only = {c.operation for c in scanned[1]} - {c.operation for c in calls}
    assert facts_only >= {"DescribeDBSnapshots", "DescribeInstanceAttribute", "GetBucketVersioning", "ListKeys"}
    assert len(calls) < len(scanned[1])


def test_denied_fact_calls_are_unreadable_and_the_scan_complete(estate: dict[str, str], moto_url: str) -> None:
    def deny(request: SignedRequest) -> bool:
        return (request.operation in ("DescribeDBSnapshots", "DescribeInstanceAttribute", "ListKeys")
                or (request.service == "s3" and "versioning" in request.path))

    with DeniedProxy(moto_url, deny) as proxy:
        result = AwsScanner(source(proxy.url)).scan()
        denied = Counter(r.operation if r.service != "s3" else "GetBucketVersioning" for r in proxy.denied)
    assert result.complete and result.errors == []
    records = {r.id: r for r in result.resources}
    db = records[estate["orders-db-snapped"]].facts
    assert db["unreadable"] == ["latest_snapshot"] and "latest_snapshot" not in db
    assert db["deletion_protection"] is False  # what the listing gave is still known
    api = records[estate["guarded-api"]].facts
    assert api["unreadable"] == ["termination_protection"] and api["root_device"] == "ebs"
    bucket = records[estate["versioned-bucket"]].facts
    assert bucket == {"expiration_days": None, "unreadable": ["versioning"]}  # nothing guessed from versioning
    key = records.get(estate["live-key"])  # an unlistable kind is left to the tagging API, as without facts
    assert key is None or (key.parent, key.facts) == (ACCOUNT, {})
    # a denied operation is asked once per reader, not once per resource
    assert denied["DescribeInstanceAttribute"] == 1 and denied["GetBucketVersioning"] == 1


def test_facts_are_stored_and_shown(scanned: tuple[ScanResult, list[Call]], estate: dict[str, str],
                                    tmp_path: Path) -> None:
    config = config_from_dict({"store": f"sqlite:///{tmp_path / 'envlabel.db'}",
                               "sources": [source("http://unused").model_dump()]})
    store = open_store(config.store)
    summary = run_source(config, store, config.sources[0], scan=lambda _: scanned[0])
    assert summary.complete
    query = Query(config, store)
    db = query.label(estate["orders-db-snapped"])
    assert db["facts"]["latest_snapshot"]["id"] == estate["manual-snapshot"]
    assert query.label(estate["locked-bucket"])["facts"]["object_lock"] is True
    assert query.label(estate["guarded-api"])["facts"]["termination_protection"] is True
