"""One action vocabulary: the check and the SDK's guards agree on every operation botocore knows."""

from __future__ import annotations

import botocore.session

from envlabel.actions import READ, classify
from envlabel.guard.arns import EXEMPT_SERVICES, is_checked

SERVICES = ("ec2", "rds", "s3", "lambda", "dynamodb", "eks", "iam", "sqs", "sns", "kms", "cloudformation")


def test_the_guard_checks_exactly_what_the_check_does_not_call_a_read() -> None:
    session = botocore.session.get_session()
    disagree = []
    for service in SERVICES:
        model = session.get_service_model(service)
        signing = model.signing_name or service
        for operation in model.operation_names:
            read = classify(f"{signing}:{operation}").action_class == READ
            if signing not in EXEMPT_SERVICES and is_checked(signing, operation) == read:
                disagree.append(f"{signing}:{operation}")
    assert disagree == []


def test_downloads_read_in_both() -> None:
    """``rds:DownloadCompleteDBLogFile``: the guard once let it through as a read while the check denied it."""
    assert classify("rds:DownloadCompleteDBLogFile").action_class == READ
    assert not is_checked("rds", "DownloadCompleteDBLogFile")
