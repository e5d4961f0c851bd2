"""``envlabel override set|rm|list``: the CLI of :mod:`envlabel.service.core.overrides`."""

from __future__ import annotations

from typing import Any

import click

from envlabel.service.cli.kit import config_option, emit_json, get_config, open_configured_store
from envlabel.service.core.clock import utcnow
from envlabel.service.core.overrides import list_overrides, parse_expiry, remove_override, set_override
from envlabel.service.core.query import Query

# -- CLI ----------------------------------------------------------------------------------------


def _print_change(body: dict[str, Any], what: str) -> None:
    label = body["label"]
    click.echo(f"{what}; {body['relabeled']} label(s) changed")
    if body.get("note"):
        click.echo(f"note: {body['note']}")
    if label["found"]:
        click.echo(f"{body['target']} is now {label['environment']} (decided by {label['decided_by']})")


@click.group()
def override() -> None:
    """Set, remove and list overrides (a person's word on a target's environment)."""


@override.command(name="set")
@click.argument("target")
@click.argument("environment")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@click.option("--by", "author", required=True, help="Who sets it.")
@click.option("--expires", default=None, help="When it stops counting: a time (ISO 8601) or a duration (2h, 7d).")
@click.option("--json", "as_json", is_flag=True)
@config_option
def set_command(*, target: str, environment: str, reason: str, author: str, expires: str | None,
                as_json: bool) -> None:
    """Decide TARGET's environment (and, for a container, everything below it)."""
    query = Query(get_config(), open_configured_store())
    now = utcnow()
    expires_at = parse_expiry(expires, now) if expires else None
    body = set_override(query, target, environment, reason=reason, author=author, expires_at=expires_at, now=now)
    if as_json:
        emit_json(body)
        return
    until = f" until {body['override']['expires_at']}" if expires_at else ""
    _print_change(body, f"override set: {body['target']} -> {environment}{until}")


@override.command(name="rm")
@click.argument("target")
@click.option("--by", "author", required=True, help="Who removes it.")
@click.option("--reason", default="", help="Why (kept in the audit trail).")
@click.option("--json", "as_json", is_flag=True)
@config_option
def rm_command(target: str, author: str, reason: str, as_json: bool) -> None:
    """Remove the override on TARGET; its own and inherited signals count again."""
    query = Query(get_config(), open_configured_store())
    body = remove_override(query, target, author=author, reason=reason)
    if as_json:
        emit_json(body)
        return
    _print_change(body, f"override removed: {body['target']}")


@override.command(name="list")
@click.option("--all", "include_all", is_flag=True, help="Include expired overrides and every change event.")
@click.option("--json", "as_json", is_flag=True)
@config_option
def list_command(include_all: bool, as_json: bool) -> None:
    """Overrides in force (with --all: expired ones too, and who changed what, when and why)."""
    body = list_overrides(Query(get_config(), open_configured_store()), include_all)
    if as_json:
        emit_json(body)
        return
    for o in body["overrides"]:
        state = "" if o["active"] else " [expired]"
        until = f" until {o['expires_at']}" if o["expires_at"] else ""
        click.echo(f"{o['environment']:<11} {o['target']}{state}\n  by {o['author']} at {o['created_at']}{until}: "
                   f"{o['reason']}")
    if not body["overrides"]:
        click.echo("no overrides" + ("" if include_all else " in force (--all shows expired ones and changes)"))
    for e in body.get("events", []):
        what = f"set {e['environment']}" if e["action"] == "set" else e["action"]
        until = f" until {e['expires_at']}" if e["expires_at"] else ""
        click.echo(f"{e['at']} {e['target']}: {what}{until} by {e['author']}: {e['reason']}")


ALL = [override]
