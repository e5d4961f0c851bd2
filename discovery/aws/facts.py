"""Recovery facts of AWS resources: what decides whether a destructive change to one can be undone.

Facts from the listings themselves (deletion protection, backup retention, an instance's root device and
volumes) cost no call; the rest are read with as few calls as the APIs allow: snapshots and backups once per
region, mapped to their resources (rds:DescribeDBSnapshots, rds:DescribeDBClusterSnapshots,
ec2:DescribeSnapshots of the account's own, dynamodb:ListBackups), and per resource only where no batch call
exists: two per table (DescribeTable, DescribeContinuousBackups), one per function (ListVersionsByFunction),
one per key (DescribeKey), two to four per bucket, one per instance (DescribeInstanceAttribute, run by the
scanner as pool tasks of their own). A region-level call is skipped when the region has nothing it describes.

Facts are not labels: a fact call that fails (AccessDenied under a policy that predates them, throttling
that outlasted the retries) never fails the scan; its keys go into ``facts["unreadable"]``, which the rules
read as "not known", never as recoverable. A denied operation is not called again by the same reader, so an
old policy costs one refused call per operation and region, not one per resource.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from envlabel.discovery.aws.calls import DENIED, Api, ScopeFailed
from envlabel.discovery.aws.records import identifier_of_arn, iso, latest, merge_facts, snapshot_ref
from envlabel.model import Resource

PERMISSIONS = (
    "rds:DescribeDBSnapshots",
    "rds:DescribeDBClusterSnapshots",
    "ec2:DescribeVolumes",
    "ec2:DescribeSnapshots",
    "ec2:DescribeInstanceAttribute",
    "s3:GetBucketVersioning",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetReplicationConfiguration",
    "s3:GetLifecycleConfiguration",
    "dynamodb:DescribeTable",
    "dynamodb:DescribeContinuousBackups",
    "dynamodb:ListBackups",
    "lambda:ListVersionsByFunction",
    "kms:ListKeys",
    "kms:DescribeKey",
)

#: facts: JSON-able, keys by kind as docs/recovery.md lists them
Facts = dict[str, Any]

#: S3 answers "not configured" with an error; for facts that is an answer, not a failure
_S3_NOT_CONFIGURED = frozenset({"ObjectLockConfigurationNotFoundError", "ReplicationConfigurationNotFoundError",
                                "NoSuchLifecycleConfiguration"})
#: snapshot/backup types AWS takes on a schedule; everything else was taken on purpose
_AUTOMATED = frozenset({"automated", "awsbackup", "SYSTEM", "AWS_BACKUP"})
#: EBS snapshots taken by Data Lifecycle Manager or AWS Backup carry one of these tags
_AUTOMATED_TAGS = ("dlm:managed", "aws:backup:source-resource")


def unreadable(*keys: str) -> Facts:
    return {"unreadable": sorted(keys)}


class Reader:
    """Calls one API for facts. A failure gives None (its keys become unreadable), an expected "not
    configured" error an empty answer, and an operation once denied is not called again."""

    def __init__(self, api: Api, expected: frozenset[str] = frozenset()) -> None:
        self.api = api
        self.expected = expected
        self.denied: set[str] = set()

    def call(self, operation: str, **params: Any) -> dict[str, Any] | None:
        if operation in self.denied:
            return None
        try:
            return self.api.call(operation, **params)
        except ScopeFailed as failure:
            return self.failed(operation, failure)

    def items(self, operation: str, key: str, **params: Any) -> list[Any] | None:
        """Every page's ``key`` list, or None when any page failed (a partial list would hide a snapshot)."""
        if operation in self.denied:
            return None
        try:
            return list(self.api.items(operation, key, **params))
        except ScopeFailed as failure:
            self.failed(operation, failure)
            return None

    def failed(self, operation: str, failure: ScopeFailed) -> dict[str, Any] | None:
        if failure.code in self.expected:
            return {}
        if failure.code in DENIED:
            self.denied.add(operation)
        return None

    def read(self, keys: tuple[str, ...], operation: str, parse: Callable[[dict[str, Any]], Facts],
             **params: Any) -> Facts:
        response = self.call(operation, **params)
        return unreadable(*keys) if response is None else parse(response)


def with_facts(resources: Iterable[Resource], patches: Mapping[str, Facts]) -> list[Resource]:
    """The resources with each one's patch merged into its facts (frozen records: new ones)."""
    return [replace(r, facts=merge_facts(r.facts, patches[r.id])) if r.id in patches else r for r in resources]


# -- facts from the listings (no call) ---------------------------------------------------------------
def db_instance_facts(db: Mapping[str, Any]) -> Facts:
    return {"deletion_protection": bool(db.get("DeletionProtection")),
            "backup_retention_days": int(db.get("BackupRetentionPeriod") or 0),
            "read_replica_of": db.get("ReadReplicaSourceDBInstanceIdentifier") or None,
            "cluster": db.get("DBClusterIdentifier") or None}


def db_cluster_facts(cluster: Mapping[str, Any]) -> Facts:
    return {"deletion_protection": bool(cluster.get("DeletionProtection")),
            "backup_retention_days": int(cluster.get("BackupRetentionPeriod") or 0)}


def instance_facts(instance: Mapping[str, Any]) -> Facts:
    """Root device and EBS volumes from DescribeInstances; termination protection needs a call of its own."""
    volumes = [{"id": m["Ebs"]["VolumeId"], "delete_on_termination": bool(m["Ebs"].get("DeleteOnTermination"))}
               for m in instance.get("BlockDeviceMappings") or () if (m.get("Ebs") or {}).get("VolumeId")]
    return {"root_device": instance.get("RootDeviceType") or "ebs", "volumes": volumes}


def eks_facts(cluster: Mapping[str, Any]) -> Facts:
    """Only where the API reports it (newer EKS versions): a missing key is "not known", never "off"."""
    protection = cluster.get("deletionProtection")
    return {} if protection is None else {"deletion_protection": bool(protection)}


def key_facts(metadata: Mapping[str, Any], now: datetime | None = None) -> Facts:
    """A key's state and, when pending deletion, how many days are left and when.

    ``PendingDeletionWindowInDays`` is only given for multi-Region replicas; otherwise the days left are
    counted from ``DeletionDate`` (whole days, rounded up: a key due in 6 h has 1 day left).
    """
    deletion = metadata.get("DeletionDate")
    days = metadata.get("PendingDeletionWindowInDays")
    if days is None and isinstance(deletion, datetime):
        left = (deletion - (now or datetime.now(UTC))).total_seconds()
        days = max(0, -int(-left // 86400))
    return {"state": str(metadata.get("KeyState") or "Unknown"), "pending_deletion_days": days,
            "deletion_date": iso(deletion)}


# -- facts read per region ---------------------------------------------------------------------------
def add_region_facts(clients_api: Callable[[str], Api], account: str, resources: list[Resource]) -> list[Resource]:
    """Snapshots and backups (once per region), tables' and functions' facts (per resource)."""
    by_kind: dict[str, list[Resource]] = defaultdict(list)
    for r in resources:
        by_kind[r.kind].append(r)
    patches: dict[str, Facts] = {}
    if by_kind["rds:db"] or by_kind["rds:cluster"]:
        rds = Reader(clients_api("rds"))
        patches |= db_snapshots(rds, by_kind["rds:db"])
        patches |= cluster_snapshots(rds, by_kind["rds:cluster"])
    if by_kind["ec2:volume"]:
        patches |= volume_snapshots(Reader(clients_api("ec2")), account, by_kind["ec2:volume"])
    if by_kind["dynamodb:table"]:
        patches |= table_facts(Reader(clients_api("dynamodb")), by_kind["dynamodb:table"])
    if by_kind["lambda:function"]:
        patches |= function_facts(Reader(clients_api("lambda")), by_kind["lambda:function"])
    return with_facts(resources, patches)


def latest_by(targets: Iterable[Resource], refs: Mapping[str, list[Facts]] | None, key: str,
              ident: Callable[[Resource], str] = lambda r: identifier_of_arn(r.id),
              eligible: Callable[[Resource, Facts], bool] = lambda r, ref: True) -> dict[str, Facts]:
    """Each target's newest eligible ref under ``key`` (None: there is none), or ``key`` unreadable."""
    if refs is None:
        return {r.id: unreadable(key) for r in targets}
    return {r.id: {key: latest(ref for ref in refs.get(ident(r), ()) if eligible(r, ref))} for r in targets}


def grouped(items: Iterable[Mapping[str, Any]] | None, by: str, ref: Callable[[Mapping[str, Any]], Facts],
            ready: Callable[[Mapping[str, Any]], bool]) -> dict[str, list[Facts]] | None:
    if items is None:
        return None
    groups: dict[str, list[Facts]] = defaultdict(list)
    for item in items:
        if item.get(by) and ready(item):
            groups[str(item[by])].append(ref(item))
    return groups


def _kind(snapshot_type: str | None) -> str:
    return "automated" if snapshot_type in _AUTOMATED else "manual"


def _not_after_retention_zero(db: Resource, ref: Facts) -> bool:
    """With retention 0 AWS has deleted every automated backup: one still listed (moto keeps the one it makes
    at creation) restores nothing, so only manual snapshots count."""
    return ref["kind"] == "manual" or db.facts.get("backup_retention_days") != 0


def db_snapshots(rds: Reader, dbs: list[Resource]) -> dict[str, Facts]:
    if not dbs:
        return {}
    snapshots = grouped(rds.items("DescribeDBSnapshots", "DBSnapshots"), "DBInstanceIdentifier",
                        lambda s: snapshot_ref(s.get("DBSnapshotArn") or s["DBSnapshotIdentifier"],
                                               s.get("SnapshotCreateTime"), _kind(s.get("SnapshotType"))),
                        lambda s: s.get("Status") == "available")
    return latest_by(dbs, snapshots, "latest_snapshot", eligible=_not_after_retention_zero)


def cluster_snapshots(rds: Reader, clusters: list[Resource]) -> dict[str, Facts]:
    if not clusters:
        return {}
    snapshots = grouped(rds.items("DescribeDBClusterSnapshots", "DBClusterSnapshots"), "DBClusterIdentifier",
                        lambda s: snapshot_ref(s.get("DBClusterSnapshotArn") or s["DBClusterSnapshotIdentifier"],
                                               s.get("SnapshotCreateTime"), _kind(s.get("SnapshotType"))),
                        lambda s: s.get("Status") == "available")
    return latest_by(clusters, snapshots, "latest_snapshot", eligible=_not_after_retention_zero)


def _ebs_kind(snapshot: Mapping[str, Any]) -> str:
    keys = {t.get("Key", "") for t in snapshot.get("Tags") or ()}
    return "automated" if keys & set(_AUTOMATED_TAGS) else "manual"


def volume_snapshots(ec2: Reader, account: str, volumes: list[Resource]) -> dict[str, Facts]:
    """The account's own snapshots (OwnerIds=self: never the public catalogue), once per region."""
    snapshots = grouped(ec2.items("DescribeSnapshots", "Snapshots", OwnerIds=["self"]), "VolumeId",
                        lambda s: snapshot_ref(s["SnapshotId"], s.get("StartTime"), _ebs_kind(s)),
                        lambda s: s.get("State") == "completed" and s.get("OwnerId", account) == account)
    return latest_by(volumes, snapshots, "latest_snapshot")


def table_facts(dynamodb: Reader, tables: list[Resource]) -> dict[str, Facts]:
    backups = grouped(dynamodb.items("ListBackups", "BackupSummaries"), "TableName",
                      lambda b: snapshot_ref(b["BackupArn"], b.get("BackupCreationDateTime"),
                                             _kind(b.get("BackupType"))),
                      lambda b: b.get("BackupStatus") == "AVAILABLE")
    patches = latest_by(tables, backups, "latest_backup")
    for table in tables:
        name = identifier_of_arn(table.id)
        protection = dynamodb.read(("deletion_protection",), "DescribeTable", lambda t: {
            "deletion_protection": bool(t.get("Table", {}).get("DeletionProtectionEnabled"))}, TableName=name)
        recovery = dynamodb.read(("point_in_time_recovery",), "DescribeContinuousBackups", lambda c: {
            "point_in_time_recovery": c.get("ContinuousBackupsDescription", {}).get(
                "PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus") == "ENABLED"},
            TableName=name)
        patches[table.id] = merge_facts(merge_facts(patches[table.id], protection), recovery)
    return patches


def function_facts(functions: Reader, listed: list[Resource]) -> dict[str, Facts]:
    """Published versions survive a change of $LATEST (an alias can be pointed back at one)."""
    patches: dict[str, Facts] = {}
    for fn in listed:
        versions = functions.items("ListVersionsByFunction", "Versions", FunctionName=identifier_of_arn(fn.id))
        patches[fn.id] = unreadable("published_versions") if versions is None else {
            "published_versions": sum(1 for v in versions if v.get("Version") != "$LATEST")}
    return patches


# -- per instance (scanner pool tasks) and per bucket ------------------------------------------------
def termination_protection(ec2: Api, instance_arns: Iterable[str]) -> dict[str, Facts]:
    """``termination_protection`` of each instance: EC2 has no batch call for it, so one call per instance."""
    reader = Reader(ec2)
    return {arn: reader.read(("termination_protection",), "DescribeInstanceAttribute", lambda a: {
                "termination_protection": bool(a.get("DisableApiTermination", {}).get("Value"))},
                InstanceId=identifier_of_arn(arn), Attribute="disableApiTermination")
            for arn in instance_arns}


def bucket_facts(s3: Reader, bucket: str) -> Facts:
    """Versioning, object lock, replication and the shortest enabled expiration.

    Object lock and replication both require versioning to be on (a locked bucket cannot suspend it), so a
    bucket that is not versioned has neither, without asking: two calls saved per such bucket.
    """
    facts = s3.read(("versioning",), "GetBucketVersioning",
                    lambda v: {"versioning": v.get("Status") or "Disabled"}, Bucket=bucket)
    if facts.get("versioning") == "Enabled":
        facts = merge_facts(facts, s3.read(("object_lock",), "GetObjectLockConfiguration", lambda o: {
            "object_lock": o.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"},
            Bucket=bucket))
        facts = merge_facts(facts, s3.read(("replication",), "GetBucketReplication", lambda r: {
            "replication": bool(r.get("ReplicationConfiguration", {}).get("Rules"))}, Bucket=bucket))
    elif "versioning" in facts:
        facts |= {"object_lock": False, "replication": False}
    return merge_facts(facts, s3.read(("expiration_days",), "GetBucketLifecycleConfiguration",
                                      lambda c: {"expiration_days": shortest_expiration(c.get("Rules") or ())},
                                      Bucket=bucket))


def s3_reader(api: Api) -> Reader:
    return Reader(api, _S3_NOT_CONFIGURED)


def shortest_expiration(rules: Iterable[Mapping[str, Any]]) -> int | None:
    """The fewest days after which an enabled rule expires current objects (None: no rule does).

    >>> shortest_expiration([{"Status": "Enabled", "Expiration": {"Days": 30}},
    ...                      {"Status": "Disabled", "Expiration": {"Days": 1}},
    ...                      {"Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 2}}])
    30
    """
    days = [int(r["Expiration"]["Days"]) for r in rules
            if r.get("Status") == "Enabled" and (r.get("Expiration") or {}).get("Days") is not None]
    return min(days, default=None)
