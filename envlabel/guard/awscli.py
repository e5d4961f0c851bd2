"""Guard the AWS CLI: every ``aws`` command on this machine is checked with envlabel, in the CLI's own process.

    pip install envlabel          # into the Python environment the `aws` command runs from
    aws configure set plugins.envlabel envlabel.guard.awscli

That writes ``envlabel = envlabel.guard.awscli`` to the ``[plugins]`` section
of ``~/.aws/config`` (or ``$AWS_CONFIG_FILE``). AWS CLI v1 imports each module
named there and calls its :func:`awscli_initialize` with the event system of
the session every command's clients are created from; AWS CLI v2 does the same
for such "legacy" plugins when ``cli_legacy_plugin_path`` in that section names
the ``site-packages`` folder that holds envlabel.

The hooks are the boto3 guard's (:mod:`envlabel.guard.boto3`): every mutating
API call a command makes (``aws rds delete-db-instance``, each object of
``aws s3 rm --recursive``) is checked before it is signed or sent, and
presigned URLs before they are signed; reads are not checked. A refusal
stops the command: ``aws`` prints envlabel's decision and reasons on stderr
(no traceback) and exits non-zero (255, the CLI's code for a failed command;
``aws s3`` transfers report each refused object and exit 1). Settings come
from the environment as for every guard: ``ENVLABEL_URL``, ``ENVLABEL_TOKEN``,
``ENVLABEL_PRINCIPAL``, ``ENVLABEL_MODE``, ``ENVLABEL_TIMEOUT``, ``ENVLABEL_FAIL_OPEN`` (envlabel unreachable: the
command is refused unless it is set, and then goes through with a warning on
stderr).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from envlabel.client import Client
from envlabel.errors import ApprovalRequired, Blocked, EnvlabelError, UnreachableError
from envlabel.guard.boto3 import hooks

log = logging.getLogger("envlabel.guard")


def awscli_initialize(cli: Any) -> None:
    """The AWS CLI plugin entry point: register the guard's botocore hooks on ``cli``, the event system of the
    CLI's session (every client a command creates copies them), with envlabel's settings from the environment."""
    _show_warnings()
    try:
        envlabel = Client(interface="guard")
    except EnvlabelError as exc:  # a bad ENVLABEL_* setting: refuse every request, saying which and how to fix it
        cli.register("before-sign", _refusing(exc), unique_id="envlabel-guard-misconfigured")
        return
    for event, unique_id, handler in hooks(envlabel):
        cli.unregister(event, unique_id=unique_id)  # a second load replaces, never stacks
        cli.register(event, _explained(handler), unique_id=unique_id)


def _refusing(problem: EnvlabelError) -> Callable[..., None]:
    # before-sign precedes every request, signed or not, and every presigned URL: nothing is sent unchecked,
    # while commands that send nothing (aws configure, help) still work to fix the setting
    def refuse(**_: Any) -> None:
        raise EnvlabelError(explain(problem))
    return refuse


def _explained(handler: Callable[..., None]) -> Callable[..., None]:
    """``handler`` whose refusals read as a sentence for the person or agent at the shell: the CLI prints an
    exception's text, and nothing else, when a command fails."""
    def run(**kwargs: Any) -> None:
        try:
            handler(**kwargs)
        except EnvlabelError as exc:
            exc.args = (explain(exc),)  # the same exception (its check JSON intact), with the CLI's message
            raise
    return run


def explain(exc: EnvlabelError) -> str:
    """What ``aws`` prints when envlabel stops a command: the decision, its reasons and what to do."""
    if isinstance(exc, Blocked):
        check = exc.check
        what = f"{check.get('action')} on {check.get('target')} ({check.get('environment')})"
        reasons = "".join(f"\n  - {reason}" for reason in check.get("reasons") or [])
        if isinstance(exc, ApprovalRequired):
            who = ", ".join(exc.approvers) or "an approver"
            if exc.approval_id is not None:
                return (f"envlabel: {what} requires approval: approval request {exc.approval_id}.{reasons}\n"
                        f"The command was not sent. Ask {who} to approve it (`envlabel approvals approve "
                        f"{exc.approval_id} --by NAME`, or on the approval page), then run the same command "
                        "again, unchanged: the approval allows that exact command once. Do not retry it under "
                        "another name or id of the same resource.")
            return (f"envlabel: {what} requires approval.{reasons}\nThe command was not sent. Ask {who} to "
                    "approve it; do not retry it under another name or id of the same resource.")
        return (f"envlabel: {what} is denied.{reasons}\nThe command was not sent. Do not retry it under another "
                "name or id of the same resource, and do not look for a way around it.")
    if isinstance(exc, UnreachableError):
        return f"envlabel could not check this command, so it was not sent: {exc}"
    return f"envlabel refused this command, so it was not sent: {exc}"


def _show_warnings() -> None:
    # The CLI configures no logging (unless --debug, and then not ours): without a handler the fail-open
    # warning, which says a command went through unchecked, would not be seen; nor the audit-mode warning the
    # client logs ("envlabel audit mode: would have denied ..."), so the handler sits on both loggers' parent
    parent = logging.getLogger("envlabel")
    if not parent.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        handler.setLevel(logging.WARNING)
        parent.addHandler(handler)
