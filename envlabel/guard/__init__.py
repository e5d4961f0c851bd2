"""Guard hooks: ask envlabel before a cloud or cluster call is sent, and stop it if the answer is no.

    import boto3, envlabel.guard.boto3
    session = boto3.Session()
    envlabel.guard.boto3.protect(session)          # every client created from it afterwards
    session.client("rds").delete_db_instance(...)  # raises ActionDenied in production

A blocked call raises :class:`envlabel.errors.ActionDenied` or
:class:`envlabel.errors.ApprovalRequired`, both carrying the check JSON, before
anything reaches the cloud. Fail closed: when envlabel does not answer the
guard raises :class:`envlabel.errors.UnreachableError` (not a ``Blocked``:
an outage is not a policy decision, and code that handles "not allowed" must
not mistake one for the other) unless ``ENVLABEL_FAIL_OPEN`` is 1/true/yes,
in which case it logs a warning and lets the call through.

Every check a guard makes for one call (several targets, a fallback) runs
under one deadline (``ENVLABEL_TIMEOUT``, default 5 s; see
:meth:`envlabel.client.Client.deadline`): a slow or trickling server cannot
hold the agent's call longer, and past the deadline the call fails closed as
unreachable (or goes through with a warning under ``ENVLABEL_FAIL_OPEN``).

Each check sends the call's parameters (JSON-able, see :func:`envlabel.parameters.jsonable`): an
approval is bound to their digest, so it allows the very call that was
approved, once. With ``wait=SECONDS`` a guard that meets ``require_approval``
waits (outside the check's deadline: a person is not a server) for the
request to be decided, then checks again, which spends the approval, and
lets the call through; denied, expired or not decided in time, it raises.
An answer in audit mode (``ENVLABEL_MODE=audit``) lets every call through,
logging what would have been blocked.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from envlabel.client import Client
from envlabel.errors import ActionDenied, ApprovalRequired, Blocked, UnreachableError

log = logging.getLogger("envlabel.guard")

_TRUE = frozenset({"1", "true", "yes", "on"})


def fail_open() -> bool:
    """True when ``ENVLABEL_FAIL_OPEN`` asks to let calls through while envlabel is unreachable."""
    return os.environ.get("ENVLABEL_FAIL_OPEN", "").strip().lower() in _TRUE




def enforce(client: Client, targets: Sequence[str], action: str, contents: bool = False, *,
            parameters: Mapping[str, Any] | None = None, wait: float | None = None) -> dict[str, Any] | None:
    """Check ``action`` on every target within one deadline; raise on the strictest refusal (after waiting up
    to ``wait`` seconds for an approval, when one is asked for).

    Returns the strictest check when allowed, or None when envlabel was
    unreachable and ``ENVLABEL_FAIL_OPEN`` let the call through.
    """
    return decide_waiting(client, lambda: client.require_all(targets, action, contents, parameters), action,
                          ", ".join(targets), wait)


def decide_waiting(client: Client, decide: Callable[[], dict[str, Any]], action: str, described: str,
                   wait: float | None) -> dict[str, Any] | None:
    """:func:`decide_within_deadline`, and with ``wait`` seconds, on ``require_approval``: wait for the request
    to be decided and decide again (spending the approval), once per request the call needs."""
    try:
        return decide_within_deadline(client, decide, action, described)
    except ApprovalRequired as refused:
        if not wait or refused.approval_id is None:
            raise
        give_up = time.monotonic() + wait
        pending = refused
    while True:
        await_approval(client, pending, give_up - time.monotonic())
        try:
            return decide_within_deadline(client, decide, action, described)
        except ApprovalRequired as again:
            # another target of the same call may need a request of its own; the same request again means
            # the approval did not match (it was spent by someone else, or the call changed): stop
            if again.approval_id is None or again.approval_id == pending.approval_id \
                    or time.monotonic() >= give_up:
                raise
            pending = again


def await_approval(client: Client, refused: ApprovalRequired, wait: float) -> None:
    """Return once the request of ``refused`` is approved; raise ActionDenied (denied) or ApprovalRequired
    (expired, already used, or not decided within ``wait`` seconds) saying what happened."""
    approval_id = refused.approval_id
    assert approval_id is not None
    log.info("waiting up to %.0f s for approval request %s of %s on %s", wait, approval_id,
             refused.check.get("action"), refused.check.get("target"))
    record = client.wait_for_approval(approval_id, wait)
    status = record.get("status")
    if status == "approved":
        return
    by, why = record.get("decided_by") or "an approver", record.get("decision_reason") or "no reason given"
    if status == "denied":
        raise _explained(ActionDenied(refused.check), f"approval request {approval_id} was denied by {by}: {why}; "
                                                      "the call was not made. Do not retry it another way")
    happened = {"expired": "expired before anyone approved it",
                "spent": "was already used by an identical call"}.get(str(status),
                                                                      f"was not decided within {wait:.0f} s")
    raise ApprovalRequired(refused.check, f"approval request {approval_id} {happened}; the call was not made")


def _explained(refusal: Blocked, note: str) -> Blocked:
    refusal.args = (f"{refusal}; {note}",)
    return refusal


def decide_within_deadline(client: Client, decide: Callable[[], dict[str, Any]], action: str,
                           described: str) -> dict[str, Any] | None:
    """Run ``decide`` (checks that raise on a refusal) under one deadline of ``client``; an outage or a passed
    deadline raises UnreachableError, or returns None with a warning under ``ENVLABEL_FAIL_OPEN``."""
    try:
        with client.deadline():
            return decide()
    except UnreachableError as exc:
        if not fail_open():
            raise
        log.warning("envlabel unreachable, letting %s on %s through because ENVLABEL_FAIL_OPEN is set: %s",
                    action, described, exc)
        return None
