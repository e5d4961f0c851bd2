"""Calling AWS: one client per thread, retries, pagination, and failures that say what to grant.

Every call goes through :class:`Api`, so a denied, throttled or expired call
becomes a :class:`ScopeFailed` naming the exact IAM action to grant and to
whom, never an empty list that would look like "nothing there".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import boto3
import botocore.session
from botocore import xform_name
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.loaders import create_loader

#: error codes that mean "these credentials may not do this here"
DENIED = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess",
    "AuthorizationError", "AuthFailure", "OptInRequired", "InvalidClientTokenId",
    "UnrecognizedClientException", "SignatureDoesNotMatch", "AccessDeniedForDependencyException",
})
EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
THROTTLED = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
    "TooManyRequestsException", "RequestThrottled", "SlowDown", "RequestThrottledException",
})

#: botocore service name -> IAM action prefix, where they differ
_IAM_PREFIX = {"resourcegroupstaggingapi": "tag"}
#: operations whose IAM action has another name
_IAM_NAME = {("s3", "ListBuckets"): "ListAllMyBuckets",
             ("s3", "GetObjectLockConfiguration"): "GetBucketObjectLockConfiguration",
             ("s3", "GetBucketReplication"): "GetReplicationConfiguration",
             ("s3", "GetBucketLifecycleConfiguration"): "GetLifecycleConfiguration"}


def iam_action(service: str, operation: str) -> str:
    """The IAM action that authorizes ``operation`` of botocore ``service``.

    >>> iam_action("resourcegroupstaggingapi", "GetResources"), iam_action("s3", "ListBuckets")
    ('tag:GetResources', 's3:ListAllMyBuckets')
    >>> iam_action("s3", "GetBucketLifecycleConfiguration")
    's3:GetLifecycleConfiguration'
    """
    return f"{_IAM_PREFIX.get(service, service)}:{_IAM_NAME.get((service, operation), operation)}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """Temporary credentials of an assumed role (plain strings: safe to share between threads)."""

    access_key: str
    secret_key: str
    token: str


#: builds a boto3 Session: None for the scanner's own credentials, else an assumed role's.
#: Sessions are not thread-safe, so the scanner asks for one per unit of work.
SessionFactory = Callable[[Credentials | None], boto3.Session]


def make_sessions(profile: str | None = None) -> SessionFactory:
    """A factory whose sessions share one botocore data loader.

    A fresh session re-reads every service model from disk (~150 ms per
    client for EC2); sharing the loader makes a session and its clients cost
    a few milliseconds, which matters at one session per account x region.
    """
    loader = create_loader()
    lock = threading.Lock()

    def make(credentials: Credentials | None) -> boto3.Session:
        core = botocore.session.Session()
        core.register_component("data_loader", loader)
        keys: dict[str, str] = {} if credentials is None else {
            "aws_access_key_id": credentials.access_key, "aws_secret_access_key": credentials.secret_key,
            "aws_session_token": credentials.token}
        with lock:
            session = boto3.Session(botocore_session=core, profile_name=profile if credentials is None else None,
                                    **keys)
            # every boto3 Session appends its data path to the loader: keep one copy, not one per session
            loader.search_paths[:] = list(dict.fromkeys(loader.search_paths))
        return session

    return make


class ScopeFailed(Exception):
    """One call failed; ``hint`` says what to do about it; ``code`` is AWS's error code, if any."""

    def __init__(self, message: str, hint: str, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


@dataclass(frozen=True, slots=True)
class Clients:
    """Makes clients of one session for one region, all with the same endpoint and retry policy."""

    session: boto3.Session
    region: str
    endpoint_url: str | None
    #: retries after the first attempt (botocore's ``max_attempts`` key counts retries)
    retries: int
    #: who is calling, for hints: "the role arn:aws:iam::...:role/X" or "the scanner's credentials (ARN)"
    principal: str

    def api(self, service: str) -> Api:
        config = Config(retries={"mode": "standard", "max_attempts": self.retries},
                        connect_timeout=10, read_timeout=60)
        client: BaseClient = self.session.client(  # type: ignore[call-overload]
            service, region_name=self.region, endpoint_url=self.endpoint_url, config=config)
        return Api(client, self.principal, self)


class Api:
    """One client, called by operation name as IAM spells it (``DescribeInstances``).

    ``clients``, when the Api came from :class:`Clients`, lets a reader reach a sibling service or region with
    the same session and policy (S3 reads each bucket region's tagging index); without it there is no sibling.
    """

    def __init__(self, client: BaseClient, principal: str, clients: Clients | None = None) -> None:
        self.client = client
        self.principal = principal
        self.clients = clients
        self.service: str = client.meta.service_model.service_name

    @property
    def region(self) -> str:
        return str(self.client.meta.region_name)

    def sibling(self, service: str, region: str) -> Api | None:
        """An Api of ``service`` in ``region`` on the same session (None: this Api was built bare)."""
        return None if self.clients is None else replace(self.clients, region=region).api(service)

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self.client, xform_name(operation))(**params)
        except (ClientError, BotoCoreError) as exc:
            raise self.failure(operation, exc) from exc
        return response

    def pages(self, operation: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every page of ``operation`` (a single response when it does not paginate)."""
        method = xform_name(operation)
        try:
            if self.client.can_paginate(method):
                yield from self.client.get_paginator(method).paginate(**params)
            else:
                yield getattr(self.client, method)(**params)
        except (ClientError, BotoCoreError) as exc:
            raise self.failure(operation, exc) from exc

    def items(self, operation: str, key: str, **params: Any) -> Iterator[Any]:
        """The ``key`` list of every page, flattened."""
        for page in self.pages(operation, **params):
            yield from page.get(key) or ()

    def failure(self, operation: str, exc: ClientError | BotoCoreError) -> ScopeFailed:
        action = iam_action(self.service, operation)
        if not isinstance(exc, ClientError):
            return ScopeFailed(f"{action} failed: {exc}",
                               "check network access to the AWS endpoint (or endpoint_url) and retry")
        code = error_code(exc)
        message = f"{action} failed: {code}: {exc.response.get('Error', {}).get('Message', '')}".rstrip(": ")
        if code in DENIED:
            hint = (f"grant {action} to {self.principal} (discovery/aws/iam-policy.json lists every action "
                    "envlabel calls), or enable the region in this account")
        elif code in EXPIRED:
            hint = f"the credentials of {self.principal} expired; refresh them (or shorten the scan) and retry"
        elif code in THROTTLED:
            hint = f"AWS kept throttling {action} after retries; scan less often or with fewer workers"
        else:
            hint = f"{action} returned {code}; retry, and check the AWS service health if it persists"
        return ScopeFailed(message, hint, code)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))
