"""``envlabel approvals list|show|approve|deny``: the approval requests in the local store, and deciding them.

A request is made by a ``require_approval`` check (``envlabel check``, a guard, a hook, the API); approving it
lets the requester's next identical call through once. The requester can never decide its own request: the core
refuses, and this prints why (exit 1). ``--by`` names the approver; nothing authenticates it here (whoever can
write the store can approve), which is why the daemon's routes take the approver from the admin token instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from envlabel.records import ApprovalRecord
from envlabel.service.cli.decisions import table
from envlabel.service.cli.kit import config_option, emit_json, get_config, open_configured_store
from envlabel.service.core.query import Query


@click.group(name="approvals")
def approvals_group() -> None:
    """Approval requests: list them, show one, approve or deny it (never your own)."""


def _query() -> Query:
    return Query(get_config(), open_configured_store())


def _authority() -> Any:
    from envlabel.service.core.authority import Authority

    return Authority(_query())


@approvals_group.command(name="list")
@click.option("--status", type=click.Choice(["pending", "approved", "denied", "spent", "expired"]), default=None,
              help="Only requests in this state (default: all).")
@click.option("--json", "as_json", is_flag=True, help='{"approvals": [...]}')
@config_option
def list_command(*, status: str | None, as_json: bool) -> None:
    """The approval requests, newest first."""
    from envlabel.service.core.approvals import list_approvals

    found = list_approvals(_query(), status)
    if as_json:
        emit_json(found)
        return
    approvals = found["approvals"]
    if not approvals:
        click.echo(f"no {status or ''} approval requests".replace("  ", " "))
        return
    rows = [["ID", "STATUS", "ENVIRONMENT", "PRINCIPAL", "ACTION", "TARGET", "EXPIRES"]]
    rows += [[a["id"], a["status"], a["environment"].upper(), a["principal"], a["action"], a["target"],
              a["expires_at"]] for a in approvals]
    click.echo(table(rows))


@approvals_group.command(name="show")
@click.argument("approval_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="The approval request JSON.")
@config_option
def show_command(*, approval_id: str, as_json: bool) -> None:
    """One request: what it asks, in which ENVIRONMENT, the evidence, the lookalikes and whether it can be
    undone."""
    from envlabel.service.core.approvals import get_approval

    record = get_approval(_query(), approval_id)
    if as_json:
        emit_json(record)
    else:
        click.echo(format_approval(record))


@approvals_group.command(name="approve")
@click.argument("approval_id", metavar="ID")
@click.option("--by", "by", required=True, help="Who approves (never the requester itself).")
@click.option("--reason", default="", help="Why (shown to the requester and in the decision log).")
@config_option
def approve_command(*, approval_id: str, by: str, reason: str) -> None:
    """Approve a pending request: the requester's next identical call is allowed, once."""
    from envlabel.service.core.approvals import approve

    record = approve(_authority(), approval_id, by, reason)
    click.echo(f"approved {record['id']}: {record['principal']} may now run {record['action']} on "
               f"{record['target']} ({record['environment'].upper()}) once, with the same parameters, until "
               f"{record['expires_at']}")


@approvals_group.command(name="deny")
@click.argument("approval_id", metavar="ID")
@click.option("--by", "by", required=True, help="Who denies (never the requester itself).")
@click.option("--reason", required=True, help="Why, so the requester knows what to do instead.")
@config_option
def deny_command(*, approval_id: str, by: str, reason: str) -> None:
    """Deny a pending request; the requester's call stays refused."""
    from envlabel.service.core.approvals import deny

    record = deny(_authority(), approval_id, by, reason)
    click.echo(f"denied {record['id']}: {record['action']} on {record['target']} "
               f"({record['environment'].upper()}) by {record['principal']} stays refused")


def format_approval(record: ApprovalRecord) -> str:
    """What an approver must see before deciding: the environment in capitals first, then the evidence behind it,
    the same-named resources elsewhere (the request may be for the wrong twin) and whether it can be undone."""
    check: Mapping[str, Any] = record["check"]
    lines = [f"{record['environment'].upper()}: {record['action']} on {record['target']}",
             f"  request:    {record['id']} ({record['status']})",
             f"  requested:  by {record['principal']} at {record['created_at']}, expires {record['expires_at']}",
             f"  reversible: {'yes' if check.get('reversible') else 'NO, it cannot be undone'}"]
    if record.get("decided_by"):
        why = f": {record['decision_reason']}" if record.get("decision_reason") else ""
        lines.append(f"  decided:    {record['status']} by {record['decided_by']} at {record['decided_at']}{why}")
    if record.get("spent_at"):
        lines.append(f"  used:       {record['spent_at']}")
    lines.append("  why it needs approval:")
    lines += [f"    - {reason}" for reason in check.get("reasons") or []]
    evidence = (check.get("label") or {}).get("evidence") or []
    lines.append("  evidence:" if evidence else "  evidence: none (never seen or unlabeled: decided as production)")
    lines += [f"    - {e.get('environment')}: {e.get('signal')} {e.get('detail')} ({e.get('source')})"
              for e in evidence]
    lookalikes = check.get("lookalikes") or []
    if lookalikes:
        lines.append("  LOOKALIKES (is this the one meant?):")
        lines += [f"    - {twin['note']}" for twin in lookalikes]
    if record["status"] == "pending":
        lines.append(f"  decide: envlabel approvals approve {record['id']} --by NAME [--reason R], or "
                     f"envlabel approvals deny {record['id']} --by NAME --reason R")
    if record.get("url"):
        lines.append(f"  page: {record['url']}")
    return "\n".join(lines)


ALL = [approvals_group]
