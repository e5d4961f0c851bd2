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
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from envlabel.client import Client
from envlabel.errors import UnreachableError

log = logging.getLogger("envlabel.guard")

_TRUE = frozenset({"1", "true", "yes", "on"})


def fail_open() -> bool:
    """True when ``ENVLABEL_FAIL_OPEN`` asks to let calls through while envlabel is unreachable."""
    return os.environ.get("ENVLABEL_FAIL_OPEN", "").strip().lower() in _TRUE


def enforce(client: Client, targets: Sequence[str], action: str, contents: bool = False) -> dict[str, Any] | None:
    """Check ``action`` on every target within one deadline; raise on the strictest refusal.

    Returns the strictest check when allowed, or None when envlabel was
    unreachable and ``ENVLABEL_FAIL_OPEN`` let the call through.
    """
    return decide_within_deadline(client, lambda: client.require_all(targets, action, contents), action,
                                  ", ".join(targets))


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
