"""Guard boto3: every mutating AWS call is checked with envlabel before it is sent.

    import boto3
    from envlabel.guard.boto3 import protect

    session = boto3.Session()
    protect(session)                  # clients the session creates from now on
    protect(existing_rds_client)      # a client created before protect()
    protect()                         # boto3's default session (boto3.client(...))

How a call is checked (botocore's event hooks, nothing patched):

- ``before-endpoint-resolution`` remembers the call's API parameters and the
  client's custom endpoint in the request context;
- ``before-call`` (after parameter validation, before anything is signed or
  sent) turns them into targets (:mod:`envlabel.guard.arns`) and asks
  envlabel about ``SERVICE:Operation`` (``rds:DeleteDBInstance``) on each;
  the strictest decision wins and a refusal raises ActionDenied /
  ApprovalRequired;
- ``before-sign`` does the same for presigned URLs and posts
  (``generate_presigned_url`` / ``generate_presigned_post`` emit no
  ``before-call``), as the operation the URL will perform: a presigned
  ``delete_object``, or any URL whose ``HttpMethod`` is not its operation's
  own, is checked before it is signed.

SERVICE is botocore's service name (``sso-admin``), never its signing name.
Reads (by :mod:`envlabel.actions`) and credential calls (sts, sso, sso-oidc)
are not checked. A bare name becomes an ARN in the account the call names, else
the caller's own, learned once per access key with ``sts:GetCallerIdentity``
(against the client's custom endpoint when it has one, as with moto or
LocalStack). All the checks of one call share one deadline
(``ENVLABEL_TIMEOUT``). The call's parameters go with each check (made
JSON-able by :func:`envlabel.parameters.jsonable`), so an approval allows that very
call once; ``protect(..., wait=SECONDS)`` waits that long for an approval
request to be decided, then checks again and lets the approved call through. Clients created from a session *before*
``protect(session)`` keep their own copy of the session's hooks: protect them
one by one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from envlabel.client import Client, raise_for_decision, strictest
from envlabel.errors import EnvlabelError
from envlabel.guard import decide_waiting
from envlabel.guard.arns import Target, action_name, is_checked, targets_of
from envlabel.parameters import jsonable

log = logging.getLogger("envlabel.guard.boto3")

_PARAMS = "envlabel_guard_params"
_ENDPOINT = "envlabel_guard_endpoint"
_MODEL = "envlabel_guard_model"
#: (event, unique id) of the hooks, in the order botocore emits them
_HOOKS = (("before-endpoint-resolution", "envlabel-guard-remember"), ("before-call", "envlabel-guard-check"),
          ("before-sign", "envlabel-guard-presign"))
#: what a presigned S3 URL does when its HttpMethod is not its operation's own: (method, has a key) -> operation
_S3_METHODS = {("DELETE", True): "DeleteObject", ("DELETE", False): "DeleteBucket", ("PUT", True): "PutObject",
               ("PUT", False): "CreateBucket", ("POST", True): "PutObject", ("POST", False): "DeleteObjects"}


def protect(session_or_client: Any = None, client: Client | None = None, *, wait: float | None = None) -> Client:
    """Guard a boto3 ``Session`` (clients created from it afterwards), a single client or resource, or
    (None) boto3's default session. Protecting again replaces the previous guard. Returns the envlabel client.

    ``wait``: seconds to wait for a person to decide an approval request before the call gives up (the
    approved call then goes through, once); None raises ApprovalRequired at once."""
    events = _events_of(session_or_client)
    envlabel = client or Client(interface="guard")
    for event, unique_id, handler in hooks(envlabel, wait=wait):
        events.unregister(event, unique_id=unique_id)  # replace, never stack: one check per call
        events.register(event, handler, unique_id=unique_id)
    return envlabel


def hooks(envlabel: Client, *, wait: float | None = None) -> list[tuple[str, str, Callable[..., None]]]:
    """The guard's botocore hooks as ``(event, unique id, handler)``, in the order botocore emits them, for an
    event system :func:`protect` cannot reach itself (the AWS CLI's, :mod:`envlabel.guard.awscli`)."""
    guard = _Guard(envlabel, wait)
    handlers: tuple[Callable[..., None], ...] = (guard.remember, guard.check, guard.presign)
    return [(event, unique_id, handler) for (event, unique_id), handler in zip(_HOOKS, handlers, strict=True)]


def _events_of(target: Any) -> Any:
    if target is None:
        import boto3

        target = boto3._get_default_session()  # what boto3.client() uses; created on first use
    meta = getattr(target, "meta", None)
    if meta is not None and hasattr(meta, "client"):  # a boto3 resource: guard the client it calls through
        meta = meta.client.meta
    if meta is not None and hasattr(meta, "events"):  # a client
        return meta.events
    if hasattr(target, "events"):  # boto3.Session
        return target.events
    if hasattr(target, "get_component"):  # botocore.session.Session
        return target.get_component("event_emitter")
    raise TypeError(f"protect() takes a boto3 Session, a botocore Session, a boto3 client or resource, "
                    f"not {target!r}")


class _Guard:
    def __init__(self, envlabel: Client, wait: float | None = None) -> None:
        self.envlabel, self.wait = envlabel, wait

    def remember(self, params: dict[str, Any], model: Any, context: dict[str, Any], builtins: dict[str, Any],
                 **_: Any) -> None:
        context[_PARAMS] = dict(params)
        context[_ENDPOINT] = builtins.get("SDK::Endpoint")
        context[_MODEL] = model

    def check(self, model: Any, request_signer: Any, context: dict[str, Any], **_: Any) -> None:
        # without remembered parameters nothing more precise is known: the account is checked (fail closed)
        self.decide(model.service_model.service_name, model.name, context.get(_PARAMS) or {}, request_signer,
                    context)

    def presign(self, request: Any, request_signer: Any, operation_name: str, **_: Any) -> None:
        """A presigned URL or post, checked as the operation it will perform, before it is signed."""
        context = request.context
        model = context.get(_MODEL)
        if not context.get("is_presign_request"):
            return  # an ordinary call: checked at before-call already
        if model is None:  # the parameters were not remembered: nothing tells what it does, so refuse
            raise EnvlabelError(f"the envlabel guard cannot tell what the presigned {operation_name} acts on; "
                                "it refuses to sign it. Protect the client before presigning")
        service = model.service_model.service_name
        params = dict(context.get(_PARAMS) or {})
        operation = operation_name
        fields = context.get("s3-presign-post-fields")
        if fields is not None:  # generate_presigned_post: an upload of "key" to the bucket
            params["Key"] = fields.get("key")
        method = str(request.method).upper()
        if model.name == operation_name and method != str(model.http.get("method", method)).upper():
            operation = _overridden(service, operation_name, method, "Key" in params)
        self.decide(service, operation, params, request_signer, context)

    def decide(self, service: str, operation: str, params: dict[str, Any], request_signer: Any,
               context: dict[str, Any]) -> None:
        if not is_checked(service, operation):
            return
        region = context.get("client_region") or getattr(request_signer, "_region_name", None) or "us-east-1"
        # botocore offers no public accessor for a client's credentials; the signer holds them
        credentials = getattr(request_signer, "_credentials", None)
        account = account_of(credentials, region, context.get(_ENDPOINT))
        targets = targets_of(service, operation, params, region, account)
        action = action_name(service, operation)
        parameters = jsonable(params)
        log.debug("checking %s on %s", action, targets)
        decide_waiting(self.envlabel, lambda: self.require(targets, action, parameters), action,
                       ", ".join(t.id for t in targets), self.wait)

    def require(self, targets: list[Target], action: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Check every target; one envlabel never saw that has a fallback is decided by its account's strictest
        label instead. The strictest decision wins."""
        checks = []
        for target in targets:
            check = self.envlabel.check(target.id, action, target.contents, parameters)
            if target.fallback is not None and not (check.get("label") or {}).get("found", True):
                check = self.envlabel.check(target.fallback, action, contents=True, parameters=parameters)
            checks.append(check)
        return raise_for_decision(strictest(checks))


def _overridden(service: str, operation: str, method: str, has_key: bool) -> str:
    """The operation a presigned URL performs when signed for another HTTP method than its own."""
    if method in ("GET", "HEAD"):
        return operation
    if service == "s3" and (method, has_key) in _S3_METHODS:
        return _S3_METHODS[(method, has_key)]
    return f"Presigned{method.title()}{operation}"  # a name no vocabulary knows: checked as a delete


_accounts: dict[str, str] = {}
_accounts_lock = threading.Lock()
_sts_session: Any = None


def account_of(credentials: Any, region: str, endpoint_url: str | None = None) -> str:
    """The account id of ``credentials`` (botocore Credentials), asked of STS once per access key."""
    if credentials is None:
        raise EnvlabelError("the envlabel guard found no AWS credentials on this client, so it cannot tell which "
                            "account the call would act on; configure credentials (AWS_PROFILE, "
                            "AWS_ACCESS_KEY_ID...) before calling")
    frozen = credentials.get_frozen_credentials()
    key = frozen.access_key
    with _accounts_lock:
        if key in _accounts:
            return _accounts[key]
    sts = _botocore_session().create_client(
        "sts", region_name=region if region != "aws-global" else "us-east-1", endpoint_url=endpoint_url,
        aws_access_key_id=frozen.access_key, aws_secret_access_key=frozen.secret_key,
        aws_session_token=frozen.token)
    try:
        account: str = sts.get_caller_identity()["Account"]
    except Exception as exc:
        raise EnvlabelError(f"the envlabel guard could not learn the AWS account of access key {key[:8]}... "
                            f"(sts:GetCallerIdentity failed: {exc}); it blocks calls it cannot attribute. Check "
                            "the credentials and that STS is reachable") from exc
    finally:
        sts.close()
    with _accounts_lock:
        _accounts[key] = account
    return account


def _botocore_session() -> Any:
    # a private session of our own: its clients carry none of the guarded session's hooks
    global _sts_session  # noqa: PLW0603 (built lazily, once, never at import time)
    if _sts_session is None:
        import botocore.session

        _sts_session = botocore.session.get_session()
    return _sts_session
