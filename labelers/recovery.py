"""What an action would cost on this target: can it be undone, how, and what is lost. Pure.

``reversible`` was a property of a verb (every delete false, everything else true). It is a property of the
target: deleting an object in a versioned bucket is undone by removing its delete marker; deleting an RDS instance
with no deletion protection, no backups and ``SkipFinalSnapshot`` loses the data for good. :func:`recovery` decides
it from the action (as :func:`envlabel.actions.classify` understood it), the call's parameters where the caller knows
them (a guard does; ``None``: not given), and the facts the last scan read of the target (``Resource.facts``; keys by
kind in docs/recovery.md).

Three rules hold throughout:

- a fact that is missing (never read, or listed in ``facts["unreadable"]``) is not known, and an answer that
  depends on it is ``"unknown"``, never ``true`` (the policy decides ``"unknown"`` as irreversible);
- an action that AWS, Kubernetes or GCP refuses on this target (deletion or termination protection, a lien) loses
  nothing: ``true``, with the reason;
- a modify that destroys data (backups to zero, versioning suspended, a lifecycle expiration, a snapshot or backup
  deleted) has ``destroys_data``: the policy decides it as the delete class, with that reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from envlabel.records import ActionClass, RecoveryRecord

#: a delete whose outcome depends on facts envlabel has no rule for: decided as irreversible
NO_RULE = "envlabel has no recovery rule for {what}; decided as irreversible until one says otherwise"
#: how long GCP keeps a deleted project before it is gone for good
GCP_PROJECT_UNDELETE_DAYS = 30
#: how long DynamoDB keeps the system backup it takes when a table with point-in-time recovery is deleted
DYNAMODB_SYSTEM_BACKUP_DAYS = 35
#: KMS's default waiting period of ScheduleKeyDeletion
KMS_DEFAULT_WINDOW_DAYS = 30
#: Kubernetes workloads: deleting one deletes its pods, never the PersistentVolumeClaims they mount
K8S_WORKLOADS = frozenset({"deployments", "replicasets", "daemonsets", "jobs", "cronjobs", "pods",
                           "replicationcontrollers"})


@dataclass(frozen=True, slots=True)
class Call:
    """One action on one target, as the rules read it."""

    action: str
    parameters: Mapping[str, Any] | None
    kind: str | None
    facts: Mapping[str, Any]
    now: datetime | None = None

    def fact(self, key: str) -> Any:
        """The fact ``key``, or :data:`MISSING` when the scan did not read it (or could not)."""
        if key in self.facts.get("unreadable", ()) or key not in self.facts:
            return MISSING
        return self.facts[key]

    def param(self, *names: str) -> Any:
        """The first of ``names`` among the parameters, however the caller spelled it (``SkipFinalSnapshot``,
        ``skip_final_snapshot``, ``--skip-final-snapshot``); :data:`MISSING` when absent or not given at all."""
        if self.parameters is None:
            return MISSING
        wanted = {_key(n) for n in names}
        return next((v for k, v in self.parameters.items() if _key(k) in wanted), MISSING)


class _Missing:
    """Not known: a fact not read, a parameter not given."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def _key(name: str) -> str:
    return name.lstrip("-").replace("-", "").replace("_", "").lower()


def _truthy(value: Any) -> bool | None:
    """A flag as a caller may send it (``True``, ``"true"``, ``"--skip-final-snapshot"`` present as ``None``)."""
    if value is MISSING:
        return None
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off")
    return value is None or bool(value)


def _structure(value: Any) -> Any:
    """A structured parameter, decoded when the caller sent it as JSON text (the AWS CLI's file:// contents)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


# -- the answers ----------------------------------------------------------------------------------------------
def recoverable(why: list[str], how: str, loses: str | None = None, *, destroys_data: bool = False
                ) -> RecoveryRecord:
    return {"reversible": True, "why": why, "how": how, "loses": loses, "destroys_data": destroys_data}


def lost(why: list[str], loses: str, *, destroys_data: bool = False, how: str | None = None) -> RecoveryRecord:
    return {"reversible": False, "why": why, "how": how, "loses": loses, "destroys_data": destroys_data}


def unknown(why: list[str], *, destroys_data: bool = False, loses: str | None = None) -> RecoveryRecord:
    return {"reversible": "unknown", "why": why, "how": None, "loses": loses, "destroys_data": destroys_data}


def refused(why: str) -> RecoveryRecord:
    """The provider refuses the action on this target: nothing is lost."""
    return recoverable([why], "nothing to recover: the call fails", None)


def snapshot_text(ref: Mapping[str, Any], now: datetime | None) -> str:
    """``manual snapshot orders-db-pre (taken 3 h ago)``; the age only when ``now`` is known.

    >>> from datetime import UTC
    >>> three_hours_on = datetime(2026, 12, 1, 3, tzinfo=UTC)
    >>> snapshot_text({"id": "s1", "at": "2026-12-01T00:00:00Z", "kind": "manual"}, three_hours_on)
    'manual snapshot s1 (taken 3 h ago, 2026-12-01T00:00:00Z)'
    """
    at = str(ref.get("at") or "")
    when = f"taken {at}" if at else "time unknown"
    if at and now is not None:
        try:
            hours = (now - datetime.fromisoformat(at.replace("Z", "+00:00"))).total_seconds() / 3600
        except (TypeError, ValueError):
            hours = -1
        if hours >= 0:
            age = f"{int(hours)} h ago" if hours < 48 else f"{int(hours // 24)} days ago"
            when = f"taken {age}, {at}"
    return f"{ref.get('kind') or 'a'} snapshot {ref.get('id')} ({when})"


# -- AWS ------------------------------------------------------------------------------------------------------
def rds_delete(call: Call) -> RecoveryRecord:
    """DeleteDBInstance / DeleteDBCluster: deletion protection, a final snapshot, retained automated backups, a
    manual snapshot, a read replica's source or an Aurora cluster's volume; else the data is gone.

    >>> def show(params, **facts): r = rds_delete(Call("rds:DeleteDBInstance", params, "rds:db", facts)); \
print(r["reversible"], "|", r["how"], "|", r["loses"])
    >>> show(None, deletion_protection=True)
    True | nothing to recover: the call fails | None
    >>> show({"SkipFinalSnapshot": True}, deletion_protection=False, backup_retention_days=0, latest_snapshot=None)
    False | None | all of its data
    >>> show({"SkipFinalSnapshot": False, "FinalDBSnapshotIdentifier": "orders-final"}, deletion_protection=False,
    ...      backup_retention_days=0, latest_snapshot=None)
    True | restore from the final snapshot orders-final, taken as it is deleted | nothing
    >>> show({"SkipFinalSnapshot": True}, deletion_protection=False, backup_retention_days=7,
    ...      latest_snapshot={"id": "orders-pre", "at": "2026-12-01T00:00:00Z", "kind": "manual"})  # doctest: +ELLIPSIS
    True | restore from manual snapshot orders-pre (taken 2026-12-01T00:00:00Z) | data written since 2026-12-01...
    >>> show({"SkipFinalSnapshot": True}, deletion_protection=False, backup_retention_days=7,
    ...      latest_snapshot={"id": "rds:orders-2026-12-01", "at": "2026-12-01T00:00:00Z", "kind": "automated"})
    False | None | all of its data
    >>> show({"SkipFinalSnapshot": True, "DeleteAutomatedBackups": False}, deletion_protection=False,
    ...      backup_retention_days=7, latest_snapshot=None)  # doctest: +ELLIPSIS
    True | restore from its retained automated backups (point in time, up to 7 days back) | data written after ...
    >>> show(None, deletion_protection=False, backup_retention_days=0, latest_snapshot=None)
    unknown | None | None
    >>> show({"SkipFinalSnapshot": True}, deletion_protection=False)
    unknown | None | None
    >>> show({"SkipFinalSnapshot": True}, deletion_protection=False, read_replica_of="orders-db")
    True | create a read replica of orders-db again | nothing (a replica holds a copy of orders-db)
    """
    what = "cluster" if "cluster" in call.action.lower() else "instance"
    kept = _rds_kept(call, what)
    if kept is not None:
        return kept
    protection = call.fact("deletion_protection")
    why = [] if protection is MISSING else ["deletion protection is off"]
    final = _final_snapshot(call)
    if final:
        return recoverable([*why, f"a final snapshot {final} is taken before the {what} is deleted"],
                           f"restore from the final snapshot {final}, taken as it is deleted", "nothing")
    why.append("the call's parameters were not given, so whether a final snapshot is taken is not known"
               if final is None else "no final snapshot (SkipFinalSnapshot, or no FinalDBSnapshotIdentifier)")
    snapshot = call.fact("latest_snapshot")
    if isinstance(snapshot, Mapping) and snapshot.get("kind") == "manual":
        return recoverable([*why, f"its latest snapshot is manual, and manual snapshots outlive the {what}"],
                           f"restore from {snapshot_text(snapshot, call.now)}",
                           f"data written since {snapshot.get('at')}")
    return _rds_backups(call, why, protection, snapshot, final)


def _rds_kept(call: Call, what: str) -> RecoveryRecord | None:
    """The delete refused (deletion protection), or the data kept elsewhere (a replica's source, an Aurora
    cluster's volume); None: neither."""
    if call.fact("deletion_protection") is True:
        return refused(f"deletion protection is on: AWS refuses to delete the {what} (turning it off is a modify, "
                       "checked on its own)")
    source = call.fact("read_replica_of")
    if isinstance(source, str) and source:
        return recoverable([f"it is a read replica of {source}: its data is a copy"],
                           f"create a read replica of {source} again", f"nothing (a replica holds a copy of {source})")
    cluster = call.fact("cluster")
    if what == "instance" and isinstance(cluster, str) and cluster:
        return recoverable([f"it is an instance of Aurora cluster {cluster}: the data is in the cluster's volume, "
                            "which deleting an instance keeps"], f"add an instance to cluster {cluster} again",
                           "nothing of the data (the instance's own settings)")
    return None


def _rds_backups(call: Call, why: list[str], protection: Any, snapshot: Any, final: str | bool | None
                 ) -> RecoveryRecord:
    """With no final and no manual snapshot: retained automated backups, else unknown or lost."""
    retention = call.fact("backup_retention_days")
    keep_automated = _truthy(call.param("DeleteAutomatedBackups")) is False
    if isinstance(retention, int) and retention > 0 and keep_automated:
        return recoverable([*why, f"its automated backups ({retention} days) are retained (DeleteAutomatedBackups "
                                  "false)"],
                           f"restore from its retained automated backups (point in time, up to {retention} days back)",
                           "data written after the last backed-up moment (minutes)")
    missing = [k for k, v in (("deletion_protection", protection), ("backup_retention_days", retention),
                              ("latest_snapshot", snapshot)) if v is MISSING]
    if missing or final is None:
        gaps = [f"not known: {', '.join(missing)} (not read by the last scan)"] if missing else []
        return unknown([*why, *gaps])
    if isinstance(retention, int) and retention > 0:
        why.append(f"its automated backups ({retention} days) are deleted with it (DeleteAutomatedBackups "
                   "defaults to true)")
    else:
        why.append("automated backups are off (backup retention 0 days)")
    why.append("no manual snapshot" if snapshot is None else
               f"its latest snapshot {snapshot.get('id') if isinstance(snapshot, Mapping) else snapshot} is "
               "automated, deleted with it")
    return lost(why, "all of its data")


def _final_snapshot(call: Call) -> str | bool | None:
    """The final snapshot the delete takes (its name), False for none, None when the parameters are not given."""
    if call.parameters is None:
        return None
    name = call.param("FinalDBSnapshotIdentifier", "FinalSnapshotIdentifier")
    skipped = bool(_truthy(call.param("SkipFinalSnapshot")))
    return False if skipped or name is MISSING or not name else str(name)


def rds_modify(call: Call) -> RecoveryRecord:
    """ModifyDBInstance / ModifyDBCluster: ``BackupRetentionPeriod=0`` deletes the automated backups.

    >>> def show(params, **facts): r = rds_modify(Call("rds:ModifyDBInstance", params, "rds:db", facts)); \
print(r["reversible"], r["destroys_data"], "|", r["loses"])
    >>> show({"BackupRetentionPeriod": 0}, backup_retention_days=7)
    False True | its automated backups and point-in-time recovery (manual snapshots stay)
    >>> show({"BackupRetentionPeriod": 0}, backup_retention_days=0)
    True False | None
    >>> show({"DBInstanceClass": "db.r6g.large"})
    True False | None
    >>> show(None)
    unknown False | None
    """
    retention = call.param("BackupRetentionPeriod")
    if call.parameters is None:
        return unknown(["the call's parameters were not given: with BackupRetentionPeriod=0 it would delete the "
                        "automated backups"])
    if retention is MISSING or _int(retention) != 0:
        return plain_modify(call)
    if call.fact("backup_retention_days") == 0:
        return recoverable(["BackupRetentionPeriod=0, and automated backups are off already: nothing is deleted"],
                           "modify it back to its previous settings")
    return lost(["BackupRetentionPeriod=0 deletes the automated backups and turns point-in-time recovery off "
                 "(a data-destroying modify, decided as a delete)"],
                "its automated backups and point-in-time recovery (manual snapshots stay)", destroys_data=True,
                how="set a retention again to take new backups; the deleted ones do not come back")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def backup_delete(call: Call) -> RecoveryRecord:
    """A snapshot, backup or recovery point deleted: it cannot be restored.

    >>> backup_delete(Call("rds:DeleteDBSnapshot", None, None, {}))["reversible"]
    False
    """
    return lost([f"{call.action} deletes a backup: a deleted backup cannot be restored"], "the backup itself",
                destroys_data=True)


def s3_delete_bucket(call: Call) -> RecoveryRecord:
    """DeleteBucket succeeds only on an empty bucket; ``--force`` (``aws s3 rb``) deletes the objects first.

    >>> def show(params, **facts): r = s3_delete_bucket(Call("s3:DeleteBucket", params, "s3:bucket", facts)); \
print(r["reversible"], "|", r["loses"])
    >>> show(None)
    True | the bucket's name (anyone may claim it) and its configuration (policy, lifecycle, tags)
    >>> show({"force": True}, versioning="Disabled", object_lock=False)
    False | every object in it
    >>> show({"force": True}, versioning="Enabled", object_lock=False)
    True | nothing (the bucket delete fails while versions remain)
    >>> show({"force": True})
    unknown | None
    """
    if _truthy(call.param("force")):
        versioning, lock = call.fact("versioning"), call.fact("object_lock")
        if versioning == "Enabled" or lock is True:
            return recoverable(["--force deletes the current objects first, but versioning keeps every version (a "
                                "delete marker on top), so the bucket is not empty and its delete fails"],
                               "remove the delete markers to bring the objects back",
                               "nothing (the bucket delete fails while versions remain)")
        if versioning is MISSING:
            return unknown(["--force deletes every object first; whether versioning keeps them is not known "
                            "(versioning not read by the last scan)"])
        return lost([f"--force deletes every object first, and versioning is {versioning}: they are gone"],
                    "every object in it")
    return recoverable(["S3 deletes only an empty bucket (every object version deleted first, each a check of "
                        "its own)"], "create the bucket again with its configuration",
                       "the bucket's name (anyone may claim it) and its configuration (policy, lifecycle, tags)")


def s3_delete_object(call: Call) -> RecoveryRecord:
    """DeleteObject(s): versioning keeps the object under a delete marker; a VersionId deletes that version for
    good (unless object lock holds it); without versioning the object is gone.

    >>> def show(action, params, **facts):
    ...     print(s3_delete_object(Call(action, params, "s3:bucket", facts))["reversible"])
    >>> show("s3:DeleteObject", {"Key": "a"}, versioning="Enabled", object_lock=False)
    True
    >>> show("s3:DeleteObject", {"Key": "a", "VersionId": "v1"}, versioning="Enabled", object_lock=False)
    False
    >>> show("s3:DeleteObjectVersion", None, versioning="Enabled", object_lock=True)
    True
    >>> show("s3:DeleteObject", {"Key": "a"}, versioning="Suspended", object_lock=False)
    False
    >>> show("s3:DeleteObject", None)
    unknown
    """
    versioning, lock = call.fact("versioning"), call.fact("object_lock")
    version = call.param("VersionId")
    by_version = "version" in call.action.lower() or (version is not MISSING and bool(version))
    if by_version:
        if lock is True:
            return refused("object lock protects the versions it retains: deleting a locked version fails")
        if lock is MISSING:
            return unknown(["a version is deleted for good unless object lock retains it; object lock was not read"])
        return lost(["deleting a version removes it for good"], "that object version")
    if versioning == "Enabled":
        return recoverable(["versioning is on: a delete only adds a delete marker, the versions stay"],
                           "delete the delete marker (or copy the previous version back)", "nothing")
    if versioning is MISSING:
        return unknown(["whether versioning keeps the object is not known (not read by the last scan)"])
    return lost([f"versioning is {versioning}: the delete removes the object for good"], "the object")


def s3_put_versioning(call: Call) -> RecoveryRecord:
    """PutBucketVersioning ``Status=Suspended``: later overwrites and deletes are for good (data-destroying).

    >>> def show(params, **facts): r = s3_put_versioning(Call("s3:PutBucketVersioning", params, "s3:bucket", facts)); \
print(r["reversible"], r["destroys_data"])
    >>> show({"VersioningConfiguration": {"Status": "Suspended"}}, versioning="Enabled", object_lock=False)
    False True
    >>> show({"VersioningConfiguration": {"Status": "Suspended"}}, versioning="Suspended")
    True False
    >>> show({"VersioningConfiguration": {"Status": "Enabled"}})
    True False
    >>> show({"versioning-configuration": "Status=Suspended"}, versioning="Enabled", object_lock=True)
    True False
    >>> show({"VersioningConfiguration": {"Status": "Suspended"}})
    unknown True
    >>> show(None)
    unknown False
    """
    if call.parameters is None:
        return unknown(["the call's parameters were not given: Status=Suspended would stop keeping versions"])
    config = _structure(call.param("VersioningConfiguration"))
    status = config.get("Status") if isinstance(config, Mapping) else (
        str(config).partition("Status=")[2].split(",")[0] if isinstance(config, str) else None)
    if str(status or "").lower() != "suspended":
        return plain_modify(call)
    if call.fact("object_lock") is True:
        return refused("object lock is on: S3 refuses to suspend versioning on the bucket")
    if call.fact("versioning") in ("Suspended", "Disabled"):
        return recoverable(["versioning is not on already: suspending it changes nothing"],
                           "nothing to recover")
    if call.fact("versioning") is MISSING:
        return unknown(["Status=Suspended stops keeping versions, if versioning is on: not known (not read by the "
                        "last scan); decided as a delete"], destroys_data=True)
    return lost(["Status=Suspended stops keeping versions: every later overwrite or delete is for good (a "
                 "data-destroying modify, decided as a delete)"],
                "every object version overwritten or deleted while versioning is suspended", destroys_data=True,
                how="enable versioning again (put-bucket-versioning Status=Enabled); what changed meanwhile is lost")


def s3_put_lifecycle(call: Call) -> RecoveryRecord:
    """PutBucketLifecycleConfiguration with an enabled Expiration: a delayed delete (unless versioning keeps the
    expired objects as noncurrent versions); a NoncurrentVersionExpiration deletes versions for good.

    >>> def show(rules, **facts):
    ...     r = s3_put_lifecycle(Call("s3:PutLifecycleConfiguration", {"LifecycleConfiguration": {"Rules": rules}},
    ...                               "s3:bucket", facts))
    ...     print(r["reversible"], r["destroys_data"])
    >>> show([{"Status": "Enabled", "Expiration": {"Days": 1}}], versioning="Disabled")
    False True
    >>> show([{"Status": "Enabled", "Expiration": {"Days": 1}}], versioning="Enabled")
    True False
    >>> show([{"Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}], versioning="Enabled")
    False True
    >>> show([{"Status": "Disabled", "Expiration": {"Days": 1}}])
    True False
    >>> show([{"Status": "Enabled", "Expiration": {"Days": 1}}])
    unknown True
    """
    if call.parameters is None:
        return unknown(["the call's parameters were not given: an Expiration rule would delete objects"])
    config = _structure(call.param("LifecycleConfiguration"))
    rules = [r for r in (config.get("Rules") or [] if isinstance(config, Mapping) else [])
             if isinstance(r, Mapping) and str(r.get("Status", "Enabled")).lower() == "enabled"]
    current = [r["Expiration"] for r in rules if isinstance(r.get("Expiration"), Mapping)
               and ({"Days", "Date"} & set(r["Expiration"]))]
    noncurrent = [r for r in rules if r.get("NoncurrentVersionExpiration")]
    if not current and not noncurrent:
        return plain_modify(call)
    days = sorted(int(e["Days"]) for e in current if _int(e.get("Days")) is not None)
    after = f"{days[0]} days after they are written" if days else "on the rule's date"
    if noncurrent:
        return lost(["a NoncurrentVersionExpiration rule deletes old versions for good (a delayed delete, decided "
                     "as a delete)"], "noncurrent object versions, once they expire", destroys_data=True)
    versioning = call.fact("versioning")
    if versioning == "Enabled":
        return recoverable([f"an Expiration rule expires objects {after}, but versioning keeps them as noncurrent "
                            "versions"], "remove the rule; restore expired objects from their noncurrent versions")
    why = [f"an Expiration rule deletes objects {after} (a delayed delete, decided as a delete)"]
    if versioning is MISSING:
        return unknown([*why, "whether versioning keeps them is not known (not read by the last scan)"],
                       destroys_data=True)
    return lost([*why, f"versioning is {versioning}: expired objects are gone"],
                f"objects older than {days[0]} days" if days else "objects past the rule's date", destroys_data=True,
                how="remove the rule before it runs")


def dynamodb_delete(call: Call) -> RecoveryRecord:
    """DeleteTable: deletion protection; point-in-time recovery (DynamoDB keeps a system backup 35 days); an
    on-demand backup.

    >>> def show(**facts):
    ...     print(dynamodb_delete(Call("dynamodb:DeleteTable", None, "dynamodb:table", facts))["reversible"])
    >>> show(deletion_protection=True)
    True
    >>> show(deletion_protection=False, point_in_time_recovery=True, latest_backup=None)
    True
    >>> show(deletion_protection=False, point_in_time_recovery=False,
    ...      latest_backup={"id": "b1", "at": "2026-12-01T00:00:00Z", "kind": "manual"})
    True
    >>> show(deletion_protection=False, point_in_time_recovery=False, latest_backup=None)
    False
    >>> show(deletion_protection=False)
    unknown
    """
    protection = call.fact("deletion_protection")
    if protection is True:
        return refused("deletion protection is on: DynamoDB refuses to delete the table")
    if call.fact("point_in_time_recovery") is True:
        return recoverable(["point-in-time recovery is on: DynamoDB keeps a system backup of a deleted table for "
                            f"{DYNAMODB_SYSTEM_BACKUP_DAYS} days"],
                           f"restore the system backup taken at deletion (within {DYNAMODB_SYSTEM_BACKUP_DAYS} days)",
                           "nothing")
    backup = call.fact("latest_backup")
    if isinstance(backup, Mapping):
        return recoverable(["its on-demand backup outlives the table"],
                           f"restore from backup {backup.get('id')} (taken {backup.get('at')})",
                           f"data written since {backup.get('at')}")
    missing = [k for k in ("deletion_protection", "point_in_time_recovery", "latest_backup")
               if call.fact(k) is MISSING]
    if missing:
        return unknown([f"not known: {', '.join(missing)} (not read by the last scan)"])
    return lost(["deletion protection is off", "point-in-time recovery is off", "no on-demand backup"],
                "all of its data")


def dynamodb_backups(call: Call) -> RecoveryRecord:
    """UpdateContinuousBackups turning point-in-time recovery off deletes its history (data-destroying).

    >>> r = dynamodb_backups(Call("dynamodb:UpdateContinuousBackups",
    ...     {"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": False}}, None, {}))
    >>> r["reversible"], r["destroys_data"]
    (False, True)
    """
    if call.parameters is None:
        return unknown(["the call's parameters were not given: turning point-in-time recovery off would delete its "
                        "history"])
    spec = _structure(call.param("PointInTimeRecoverySpecification"))
    enabled = spec.get("PointInTimeRecoveryEnabled") if isinstance(spec, Mapping) else MISSING
    if _truthy(enabled) is not False:
        return plain_modify(call)
    if call.fact("point_in_time_recovery") is False:
        return recoverable(["point-in-time recovery is off already: nothing is deleted"], "nothing to recover")
    return lost(["turning point-in-time recovery off deletes its restore history (a data-destroying modify, "
                 "decided as a delete)"], "every restorable moment of the last 35 days", destroys_data=True,
                how="turn it on again; the deleted history does not come back")


def ec2_terminate(call: Call) -> RecoveryRecord:
    """TerminateInstances: termination protection; an instance-store root; volumes deleted on termination.

    >>> def show(**facts): r = ec2_terminate(Call("ec2:TerminateInstances", None, "ec2:instance", facts)); \
print(r["reversible"], "|", r["loses"])
    >>> show(termination_protection=True)
    True | None
    >>> show(termination_protection=False, root_device="instance-store", volumes=[])
    False | its instance-store data
    >>> show(termination_protection=False, root_device="ebs", volumes=[{"id": "vol-1", "delete_on_termination": True}])
    False | the data on vol-1 (DeleteOnTermination)
    >>> show(termination_protection=False, root_device="ebs", volumes=[{"id": "vol-1", "delete_on_termination": False}])
    True | the instance itself (its id, its instance-store and memory)
    >>> show(termination_protection=False)
    unknown | None
    """
    if call.fact("termination_protection") is True:
        return refused("termination protection is on: EC2 refuses to terminate the instance")
    root, volumes = call.fact("root_device"), call.fact("volumes")
    if root == "instance-store":
        return lost(["its root device is instance store, which terminating deletes"], "its instance-store data")
    missing = [k for k in ("termination_protection", "root_device", "volumes") if call.fact(k) is MISSING]
    if missing or not isinstance(volumes, list):
        return unknown([f"not known: {', '.join(missing) or 'volumes'} (not read by the last scan)"])
    doomed = [str(v.get("id")) for v in volumes
              if isinstance(v, Mapping) and v.get("delete_on_termination") is not False]
    if doomed:
        return lost([f"{', '.join(doomed)}: deleted on termination (DeleteOnTermination)"],
                    f"the data on {', '.join(doomed)} (DeleteOnTermination)")
    kept = ", ".join(str(v.get("id")) for v in volumes if isinstance(v, Mapping))
    return recoverable([f"its EBS volumes ({kept or 'none'}) are kept (DeleteOnTermination false)"],
                       f"launch a new instance and attach {kept or 'its volumes'}",
                       "the instance itself (its id, its instance-store and memory)")


def ec2_delete_volume(call: Call) -> RecoveryRecord:
    """DeleteVolume: a snapshot of it brings the data back.

    >>> ec2_delete_volume(Call("ec2:DeleteVolume", None, "ec2:volume", {"latest_snapshot": None}))["reversible"]
    False
    >>> ec2_delete_volume(Call("ec2:DeleteVolume", None, "ec2:volume",
    ...     {"latest_snapshot": {"id": "snap-1", "at": "2026-12-01T00:00:00Z", "kind": "manual"}}))["how"]
    'create a volume from manual snapshot snap-1 (taken 2026-12-01T00:00:00Z)'
    """
    snapshot = call.fact("latest_snapshot")
    if isinstance(snapshot, Mapping):
        return recoverable(["a snapshot of it outlives the volume"], f"create a volume from "
                           f"{snapshot_text(snapshot, call.now)}", f"data written since {snapshot.get('at')}")
    if snapshot is MISSING:
        return unknown(["not known: latest_snapshot (not read by the last scan)"])
    return lost(["no snapshot of it"], "all of its data")


def lambda_delete(call: Call) -> RecoveryRecord:
    """DeleteFunction deletes the function and every published version; AWS keeps no copy of the code.

    >>> three = Call("lambda:DeleteFunction", None, "lambda:function", {"published_versions": 3})
    >>> print(lambda_delete(three)["why"][0])  # doctest: +ELLIPSIS
    it deletes the function with its 3 published versions (and the aliases pointing at them); AWS keeps no copy ...
    """
    qualifier = call.param("Qualifier")
    if qualifier is not MISSING and qualifier:
        return lost([f"it deletes version {qualifier}: a published version cannot be published again as the same "
                     "number"], f"version {qualifier}", how="publish the code again as a new version")
    versions = call.fact("published_versions")
    count = f" with its {versions} published versions (and the aliases pointing at them)" \
        if isinstance(versions, int) else ""
    return lost([f"it deletes the function{count}; AWS keeps no copy of the code"],
                "the function, its versions and aliases", how="deploy it again from its source")


def kms_schedule_deletion(call: Call) -> RecoveryRecord:
    """ScheduleKeyDeletion waits 7-30 days (default 30): CancelKeyDeletion undoes it until then.

    >>> kms_schedule_deletion(Call("kms:ScheduleKeyDeletion", {"PendingWindowInDays": 7}, "kms:key", {}))["how"]
    'cancel it with kms:CancelKeyDeletion within 7 days (then enable the key again)'
    >>> kms_schedule_deletion(Call("kms:ScheduleKeyDeletion", None, "kms:key",
    ...     {"state": "PendingDeletion", "deletion_date": "2026-12-08T00:00:00Z"}))["how"]
    'cancel it with kms:CancelKeyDeletion before 2026-12-08T00:00:00Z (then enable the key again)'
    """
    if call.fact("state") == "PendingDeletion":
        date = call.fact("deletion_date")
        before = f"before {date}" if isinstance(date, str) else "before its deletion date"
        return recoverable(["the key is already pending deletion"],
                           f"cancel it with kms:CancelKeyDeletion {before} (then enable the key again)",
                           "after that date, everything encrypted under the key (it cannot be decrypted)")
    days = _int(call.param("PendingWindowInDays")) or KMS_DEFAULT_WINDOW_DAYS
    return recoverable([f"KMS deletes the key only after a {days}-day waiting period; meanwhile it is disabled "
                        "(what uses it fails)"], f"cancel it with kms:CancelKeyDeletion within {days} days "
                       "(then enable the key again)",
                       "if not cancelled in time, everything encrypted under the key (it cannot be decrypted)")


def eks_delete(call: Call) -> RecoveryRecord:
    """DeleteCluster: deletion protection, else the control plane and its state are gone.

    >>> eks_delete(Call("eks:DeleteCluster", None, "eks:cluster", {"deletion_protection": True}))["reversible"]
    True
    >>> eks_delete(Call("eks:DeleteCluster", None, "eks:cluster", {"deletion_protection": False}))["reversible"]
    False
    """
    protection = call.fact("deletion_protection")
    if protection is True:
        return refused("deletion protection is on: EKS refuses to delete the cluster")
    if protection is MISSING:
        return unknown(["not known: deletion_protection (not read by the last scan)"])
    return lost(["deletion protection is off: the control plane and everything stored in it (etcd) are deleted"],
                "the cluster's state (every Kubernetes object; volumes with reclaim policy Retain stay)",
                how="create a cluster again and re-apply every workload from its source")


# -- Kubernetes -----------------------------------------------------------------------------------------------
def k8s_delete(call: Call) -> RecoveryRecord:
    """``delete`` of a PVC or PV (reclaim policy), a workload (its PVCs stay), a statefulset (its claim templates'
    PVCs stay unless its retention policy deletes them), a namespace (everything in it).

    >>> def show(kind, params=None, **facts): r = k8s_delete(Call("delete", params, f"k8s:{kind}", facts)); \
print(r["reversible"], "|", r["loses"])
    >>> show("persistentvolumeclaims", reclaim_policy="Delete", volume="pv-1")
    False | the volume pv-1 and all of its data
    >>> show("persistentvolumeclaims", reclaim_policy="Retain", volume="pv-1")
    True | nothing (the volume is kept)
    >>> show("persistentvolumeclaims")
    unknown | None
    >>> show("persistentvolumes", reclaim_policy="Retain")
    True | nothing (the backing disk is kept)
    >>> show("deployments", pvc_refs=["data"])
    True | the pods' ephemeral storage (emptyDir) and state in memory
    >>> show("statefulsets", volume_claim_templates=["data"])
    unknown | None
    >>> show("statefulsets", volume_claim_templates=["data"], pvc_retention_when_deleted="Retain")
    True | the pods' ephemeral storage (emptyDir) and state in memory
    >>> show("deployments", {"propagationPolicy": "Orphan"})
    True | nothing (its pods keep running)
    >>> show("namespaces")
    unknown | None
    """
    resource = _k8s_resource(call)
    if resource == "persistentvolumeclaims":
        return _reclaim(call, "the claim's volume")
    if resource == "persistentvolumes":
        return _reclaim(call, "the backing disk")
    if resource in K8S_WORKLOADS or resource == "statefulsets":
        return _k8s_workload(call, resource)
    if resource == "namespaces":
        return unknown(["deleting a namespace deletes everything in it, PersistentVolumeClaims included; their "
                        "reclaim policies decide, and are not weighed here (check the claims themselves)"])
    return unknown([NO_RULE.format(what=f"deleting {resource or 'this object'}")])


def _k8s_workload(call: Call, resource: str) -> RecoveryRecord:
    """A workload's delete takes its pods, never the claims they mount; a statefulset's claim templates' PVCs go
    too only when its ``persistentVolumeClaimRetentionPolicy.whenDeleted`` is Delete."""
    if str(_structure(call.param("propagationPolicy", "cascade")) or "").lower() == "orphan":
        return recoverable(["propagationPolicy Orphan: its pods (and their volumes) are left running"],
                           "apply its manifest again to adopt them", "nothing (its pods keep running)")
    refs = call.fact("pvc_refs")
    claims = [str(c) for c in refs] if isinstance(refs, list) else []
    why = [f"deleting {resource} deletes their pods, never the PersistentVolumeClaims they mount"
           + (f" ({', '.join(claims)}: the data stays)" if claims else "")]
    if resource == "statefulsets":
        templates, retention = call.fact("volume_claim_templates"), call.fact("pvc_retention_when_deleted")
        if templates is MISSING:
            return unknown(["not known: volume_claim_templates (not read by the last scan)"])
        names = ", ".join(map(str, templates or []))
        if templates and retention is MISSING:
            return unknown([f"its claim templates ({names}) make PVCs that stay unless its "
                            "persistentVolumeClaimRetentionPolicy.whenDeleted is Delete",
                            "not known: the retention policy (not read by the last scan)"])
        if templates and retention != "Retain":
            return lost([*why, f"whenDeleted is {retention}: its PVCs ({names}) go with it"],
                        "its PVCs and, by their reclaim policy, their volumes")
        why = [f"its claim templates' PVCs ({names or 'none'}) are kept"]
    return recoverable(why, "apply its manifest again (from its source: the cluster keeps no copy)",
                       "the pods' ephemeral storage (emptyDir) and state in memory")


def _k8s_resource(call: Call) -> str:
    words = call.action.split()
    if len(words) >= 2:
        return words[1].split("/")[0].lower()
    return (call.kind or "").removeprefix("k8s:").lower()


def _reclaim(call: Call, what: str) -> RecoveryRecord:
    policy, volume = call.fact("reclaim_policy"), call.fact("volume")
    name = f" {volume}" if isinstance(volume, str) and volume else ""
    if policy == "Retain":
        return recoverable([f"reclaim policy Retain: {what}{name} is kept (Released)"],
                           f"bind it again: clear the volume{name}'s claimRef and create the claim again"
                           if "claim" in what else "create a PersistentVolume pointing at the disk again",
                           "nothing (the volume is kept)" if "claim" in what else "nothing (the backing disk is kept)")
    if policy in ("Delete", "Recycle"):
        verb = "deleted" if policy == "Delete" else "scrubbed (Recycle)"
        return lost([f"reclaim policy {policy}: {what}{name} is {verb} with it"],
                    f"the volume{name} and all of its data")
    return unknown(["not known: reclaim_policy (not read by the last scan)"])


# -- GCP ------------------------------------------------------------------------------------------------------
def gcp_project_delete(call: Call) -> RecoveryRecord:
    """A deleted project can be undeleted for 30 days; a lien makes the delete fail.

    >>> gcp_project_delete(Call("resourcemanager.projects.delete", None, "gcp:project", {"liens": 1}))["how"]
    'nothing to recover: the call fails'
    >>> gcp_project_delete(Call("resourcemanager.projects.delete", None, "gcp:project", {"liens": 0}))["reversible"]
    True
    """
    liens = call.fact("liens")
    if isinstance(liens, int) and liens > 0:
        return refused(f"{liens} lien{'s' if liens > 1 else ''} on the project: GCP refuses to delete it")
    return recoverable([f"GCP keeps a deleted project {GCP_PROJECT_UNDELETE_DAYS} days before it is gone"
                        + ("" if liens == 0 else " (whether a lien would block the delete is not known)")],
                       f"gcloud projects undelete within {GCP_PROJECT_UNDELETE_DAYS} days",
                       f"service meanwhile (everything in it stops); after {GCP_PROJECT_UNDELETE_DAYS} days, "
                       "everything")


def cloudsql_delete(call: Call) -> RecoveryRecord:
    """Cloud SQL instances: deletion protection; without it, the backups go with the instance unless it retains
    them, which envlabel does not read.

    >>> def show(**facts):
    ...     print(cloudsql_delete(Call("cloudsql.instances.delete", None, "sqladmin.Instance", facts))["reversible"])
    >>> show(deletion_protection=True)
    True
    >>> show(deletion_protection=False, backups_enabled=False)
    False
    >>> show(deletion_protection=False, backups_enabled=True)
    unknown
    """
    protection, backups = call.fact("deletion_protection"), call.fact("backups_enabled")
    if protection is True:
        return refused("deletion protection is on: Cloud SQL refuses to delete the instance")
    if protection is MISSING or backups is MISSING:
        return unknown(["not known: deletion_protection or backups_enabled (not read by the last scan)"])
    if backups is False:
        return lost(["deletion protection is off", "backups are off"], "all of its data")
    return unknown(["deletion protection is off; its automated backups are deleted with it unless the instance "
                    "retains backups after deletion, which envlabel does not read"])


def gcs_delete(call: Call) -> RecoveryRecord:
    """Buckets: a bucket is deleted only empty (soft delete keeps it restorable); objects: versioning or soft
    delete keeps them.

    >>> def show(action, **facts): print(gcs_delete(Call(action, None, "storage.Bucket", facts))["reversible"])
    >>> show("storage.objects.delete", versioning=False, soft_delete_days=7)
    True
    >>> show("storage.objects.delete", versioning=False, soft_delete_days=0)
    False
    >>> show("storage.objects.delete")
    unknown
    >>> show("storage.buckets.delete")
    True
    """
    versioning, soft = call.fact("versioning"), call.fact("soft_delete_days")
    if "buckets" in call.action:
        how = (f"restore the soft-deleted bucket within {soft} days" if isinstance(soft, int) and soft > 0
               else "create the bucket again with its configuration")
        return recoverable(["Cloud Storage deletes only an empty bucket (each object delete is a check of its own)"],
                           how, "the bucket's name (anyone may claim it) and its configuration")
    if versioning is True:
        return recoverable(["versioning is on: the object becomes a noncurrent version"],
                           "copy the noncurrent version back", "nothing")
    if isinstance(soft, int) and soft > 0:
        return recoverable([f"soft delete keeps deleted objects {soft} days"],
                           f"restore it within {soft} days (gcloud storage restore)", "nothing if restored in time")
    if versioning is MISSING or soft is MISSING:
        return unknown(["not known: versioning or soft_delete_days (not read by the last scan)"])
    return lost(["versioning and soft delete are off"], "the object")


def gcs_update(call: Call) -> RecoveryRecord:
    """A bucket update turning versioning or soft delete off destroys what they keep (data-destroying).

    >>> gcs_update(Call("storage.buckets.update", {"versioning": {"enabled": False}}, "storage.Bucket",
    ...     {"versioning": True}))["destroys_data"]
    True
    """
    if call.parameters is None:
        return unknown(["the call's parameters were not given: turning versioning or soft delete off would stop "
                        "keeping deleted objects"])
    versioning = _structure(call.param("versioning"))
    soft = _structure(call.param("softDeletePolicy"))
    off = []
    if isinstance(versioning, Mapping) and _truthy(versioning.get("enabled", MISSING)) is False:
        off.append("versioning")
    if isinstance(soft, Mapping) and _int(soft.get("retentionDurationSeconds")) == 0:
        off.append("soft delete")
    if not off:
        return plain_modify(call)
    return lost([f"it turns {' and '.join(off)} off: later deletes are for good (a data-destroying modify, decided "
                 "as a delete)"], "every object deleted or overwritten afterwards", destroys_data=True,
                how=f"turn {' and '.join(off)} on again; what changed meanwhile is lost")


# -- the table ------------------------------------------------------------------------------------------------
Rule = Callable[[Call], RecoveryRecord]

#: the rule of each action, by the canonical name ``classify`` understood it as (lower case)
RULES: dict[str, Rule] = {
    "rds:deletedbinstance": rds_delete, "rds:deletedbcluster": rds_delete,
    "rds:modifydbinstance": rds_modify, "rds:modifydbcluster": rds_modify,
    "rds:deletedbsnapshot": backup_delete, "rds:deletedbclustersnapshot": backup_delete,
    "rds:deletedbinstanceautomatedbackup": backup_delete, "rds:deletedbclusterautomatedbackup": backup_delete,
    "dynamodb:deletebackup": backup_delete, "backup:deleterecoverypoint": backup_delete,
    "ec2:deletesnapshot": backup_delete, "cloudsql.backupruns.delete": backup_delete,
    "s3:deletebucket": s3_delete_bucket,
    "s3:deleteobject": s3_delete_object, "s3:deleteobjects": s3_delete_object,
    "s3:deleteobjectversion": s3_delete_object,
    "s3:putbucketversioning": s3_put_versioning,
    "s3:putlifecycleconfiguration": s3_put_lifecycle, "s3:putbucketlifecycleconfiguration": s3_put_lifecycle,
    "s3:putbucketlifecycle": s3_put_lifecycle,
    "dynamodb:deletetable": dynamodb_delete, "dynamodb:updatecontinuousbackups": dynamodb_backups,
    "ec2:terminateinstances": ec2_terminate, "ec2:deletevolume": ec2_delete_volume,
    "lambda:deletefunction": lambda_delete,
    "kms:schedulekeydeletion": kms_schedule_deletion,
    "eks:deletecluster": eks_delete,
    "resourcemanager.projects.delete": gcp_project_delete,
    "cloudsql.instances.delete": cloudsql_delete,
    "storage.buckets.delete": gcs_delete, "storage.objects.delete": gcs_delete,
    "storage.buckets.update": gcs_update,
}


def plain_modify(call: Call) -> RecoveryRecord:
    """A modify no rule knows to destroy data: it changes settings, and setting them back undoes it."""
    return recoverable([f"{call.action} changes settings, not data (no rule says it destroys data)"],
                       "apply the previous settings again")


def recovery(action_class: ActionClass, understood_as: str | None, parameters: Mapping[str, Any] | None,
             kind: str | None, facts: Mapping[str, Any], *, now: datetime | None = None) -> RecoveryRecord:
    """What ``understood_as`` (the action as classified, None: not recognized) would cost on a target of ``kind``
    with ``facts``, given the call's ``parameters`` (None: not given). ``now`` only words a snapshot's age.

    >>> recovery("read", "rds:DescribeDBInstances", None, "rds:db", {})["how"]
    'nothing to recover: a read changes nothing'
    >>> recovery("create", "rds:CreateDBSnapshot", None, "rds:db", {})["how"]
    'delete what was created'
    >>> recovery("delete", None, None, "rds:db", {"deletion_protection": True})["reversible"]
    'unknown'
    >>> recovery("delete", "delete", {"propagationPolicy": "Background"}, "k8s:persistentvolumeclaims",
    ...          {"reclaim_policy": "Delete"})["reversible"]
    False
    >>> recovery("delete", "rds:DeleteDBInstance", None, "rds:db", {"deletion_protection": False,
    ...          "backup_retention_days": 7, "latest_snapshot": None, "unreadable": ["latest_snapshot"]})["reversible"]
    'unknown'
    """
    if action_class in ("read", "create"):
        return (recoverable(["a read changes nothing"], "nothing to recover: a read changes nothing")
                if action_class == "read" else
                recoverable(["a create adds something new and changes nothing that exists"], "delete what was created"))
    if understood_as is None:
        return unknown(["the action was not recognized, so what it does is not known (decided as a delete)"])
    call = Call(understood_as, parameters, kind, facts, now)
    rule = RULES.get(understood_as.lower())
    if rule is None and understood_as.split()[0].lower() in ("delete", "deletecollection"):
        rule = k8s_delete
    if rule is None:
        rule = _fallback(action_class, understood_as)
    return rule(call)


def _fallback(action_class: ActionClass, understood_as: str) -> Rule:
    """The rule of an action no row names: a modify changes settings; a delete of a backup destroys it; any other
    delete is not known (decided as irreversible)."""
    if action_class == "modify":
        return plain_modify
    if any(word in understood_as.lower() for word in ("snapshot", "backup", "recoverypoint")):
        return backup_delete
    return lambda call: unknown([NO_RULE.format(what=understood_as)])
