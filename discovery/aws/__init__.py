"""AWS discovery: the Organizations tree and the resources of every account and region.

``AwsScanner(source).scan()`` returns a :class:`envlabel.model.ScanResult`.
Every module declares the IAM actions it calls in ``PERMISSIONS``;
``iam-policy.json`` here grants exactly those (read-only, plus sts:AssumeRole
into the member accounts), and a test holds the two together.
"""

from __future__ import annotations

from envlabel.discovery.aws import facts, organization, scanner, services
from envlabel.discovery.aws.calls import Credentials, SessionFactory, make_sessions
from envlabel.discovery.aws.scanner import AwsScanner

#: every IAM action the scanner may call
PERMISSIONS: tuple[str, ...] = (*scanner.PERMISSIONS, *organization.PERMISSIONS, *services.PERMISSIONS,
                                   *facts.PERMISSIONS)

__all__ = ["PERMISSIONS", "AwsScanner", "Credentials", "SessionFactory", "make_sessions"]
