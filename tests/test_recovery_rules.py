"""The recovery rules (labelers/recovery.py), pure: every row's docstring example holds, and the rules that the
policy leans on (unknown is never true, a data-destroying modify is flagged, reads and creates are reversible)."""

from __future__ import annotations

import doctest
import importlib
from typing import Any

import pytest

from envlabel.actions import classify
from envlabel.labelers.recovery import RULES, recovery
from envlabel.records import RecoveryRecord

NO_BACKUPS = {"deletion_protection": False, "backup_retention_days": 0, "latest_snapshot": None,
              "read_replica_of": None, "cluster": None}


def cost(action: str, kind: str | None, facts: dict[str, Any], parameters: dict[str, Any] | None = None
         ) -> RecoveryRecord:
    c = classify(action)
    return recovery(c.action_class, c.understood_as, parameters, kind, facts)


def test_every_rule_row_has_docstring_examples_that_hold() -> None:
    module = importlib.import_module("envlabel.labelers.recovery")
    result = doctest.testmod(module)
    assert result.attempted > 60 and result.failed == 0
    assert all(rule.__doc__ and ">>>" in rule.__doc__ for rule in set(RULES.values()))


def test_the_orders_db_without_backups_is_irreversible_with_its_reasons() -> None:
    got = cost("rds:DeleteDBInstance", "rds:db", NO_BACKUPS, {"SkipFinalSnapshot": True})
    assert got["reversible"] is False and got["loses"] == "all of its data"
    assert "deletion protection is off" in got["why"]
    assert any("backup retention 0 days" in w for w in got["why"]) and "no manual snapshot" in got["why"]
    assert any("SkipFinalSnapshot" in w for w in got["why"])


def test_with_a_manual_snapshot_it_is_recoverable_and_how_names_it() -> None:
    snapshot = {"id": "orders-pre-migration", "at": "2026-03-01T01:00:00Z", "kind": "manual"}
    got = cost("aws rds delete-db-instance", "rds:db", {**NO_BACKUPS, "latest_snapshot": snapshot},
               {"skip-final-snapshot": True})
    assert got["reversible"] is True and got["how"] is not None and "orders-pre-migration" in got["how"]
    assert got["loses"] == "data written since 2026-03-01T01:00:00Z"


@pytest.mark.parametrize(("action", "kind", "facts", "parameters"), [
    ("rds:DeleteDBInstance", "rds:db", {}, {"SkipFinalSnapshot": True}),
    ("rds:DeleteDBInstance", "rds:db", {**NO_BACKUPS, "unreadable": ["latest_snapshot"]}, {"SkipFinalSnapshot": True}),
    ("dynamodb:DeleteTable", "dynamodb:table", {"unreadable": ["deletion_protection"]}, None),
    ("s3:DeleteObject", "s3:bucket", {"unreadable": ["versioning"]}, None),
    ("ec2:TerminateInstances", "ec2:instance", {}, None),
    ("delete", "k8s:persistentvolumeclaims", {}, None),
    ("Frobnicate", None, {}, None),
    ("cloudsql.instances.delete", "sqladmin.Instance", {}, None),
    ("delete configmaps", "k8s:configmaps", {}, None),
])
def test_facts_not_known_are_unknown_never_true(action: str, kind: str | None, facts: dict[str, Any],
                                                parameters: dict[str, Any] | None) -> None:
    assert cost(action, kind, facts, parameters)["reversible"] == "unknown"


@pytest.mark.parametrize(("action", "kind", "facts", "parameters"), [
    ("rds:ModifyDBInstance", "rds:db", {"backup_retention_days": 7}, {"BackupRetentionPeriod": 0}),
    ("s3:PutBucketVersioning", "s3:bucket", {"versioning": "Enabled", "object_lock": False},
     {"VersioningConfiguration": {"Status": "Suspended"}}),
    ("s3:PutBucketLifecycleConfiguration", "s3:bucket", {"versioning": "Disabled"},
     {"LifecycleConfiguration": {"Rules": [{"ID": "x", "Status": "Enabled", "Expiration": {"Days": 1}}]}}),
    ("rds:DeleteDBSnapshot", None, {}, None),
    ("dynamodb:DeleteBackup", None, {}, None),
    ("dynamodb:UpdateContinuousBackups", "dynamodb:table", {"point_in_time_recovery": True},
     {"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": False}}),
])
def test_data_destroying_actions_are_flagged(action: str, kind: str | None, facts: dict[str, Any],
                                             parameters: dict[str, Any] | None) -> None:
    got = cost(action, kind, facts, parameters)
    assert got["destroys_data"] is True and got["reversible"] is False and got["loses"]


@pytest.mark.parametrize(("action", "how"), [("rds:DescribeDBInstances", "nothing to recover: a read changes nothing"),
                                             ("rds:CreateDBSnapshot", "delete what was created"),
                                             ("get", "nothing to recover: a read changes nothing")])
def test_reads_and_creates_are_reversible(action: str, how: str) -> None:
    got = cost(action, "rds:db", {})
    assert (got["reversible"], got["how"], got["destroys_data"]) == (True, how, False)


@pytest.mark.parametrize(("facts", "reversible"), [({"reclaim_policy": "Delete", "volume": "pv-orders"}, False),
                                                   ({"reclaim_policy": "Retain", "volume": "pv-orders"}, True),
                                                   ({"reclaim_policy": "Recycle"}, False)])
def test_a_pvc_delete_follows_its_reclaim_policy(facts: dict[str, Any], reversible: bool) -> None:
    for action in ("delete", "delete pvc", "delete persistentvolumeclaims"):
        assert cost(action, "k8s:persistentvolumeclaims", facts)["reversible"] is reversible, action


def test_refused_deletes_lose_nothing() -> None:
    for action, kind, facts in [("rds:DeleteDBInstance", "rds:db", {"deletion_protection": True}),
                                ("ec2:TerminateInstances", "ec2:instance", {"termination_protection": True}),
                                ("resourcemanager.projects.delete", "gcp:project", {"liens": 2}),
                                ("eks:DeleteCluster", "eks:cluster", {"deletion_protection": True})]:
        got = cost(action, kind, facts, {"SkipFinalSnapshot": True})
        assert (got["reversible"], got["how"]) == (True, "nothing to recover: the call fails"), action


def test_a_kms_key_deletion_is_recoverable_by_cancelling_within_its_window() -> None:
    got = cost("kms:ScheduleKeyDeletion", "kms:key", {"state": "Enabled"}, {"PendingWindowInDays": 7})
    assert got["reversible"] is True and "CancelKeyDeletion within 7 days" in str(got["how"])


def test_parameters_as_the_cli_writes_them() -> None:
    """The AWS CLI's flags and JSON text parameters read as the boto3 ones do."""
    lifecycle = '{"Rules": [{"Status": "Enabled", "Expiration": {"Days": 1}}]}'
    got = cost("aws s3api put-bucket-lifecycle-configuration", "s3:bucket", {"versioning": "Suspended"},
               {"--lifecycle-configuration": lifecycle})
    assert got["destroys_data"] is True
    final = cost("rds delete-db-instance", "rds:db", NO_BACKUPS, {"final-db-snapshot-identifier": "orders-final"})
    assert final["reversible"] is True and "orders-final" in str(final["how"])
