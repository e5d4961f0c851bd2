"""Overrides: a person's word on a target's environment, with reason, author and optional expiry.

The functions here are what the CLI (``envlabel override set|rm|list``) and the HTTP API
(``POST/DELETE /v1/overrides``) call. Setting or removing an override relabels the target's
subtree in the same call, so the next read already reflects it; every change is also kept in
``override_events``. An expired override stops counting at once: labels it took part in carry
``valid_until`` and are recomputed on read (``Query.label``); :func:`relabel_lapsed` and the next
scan persist the change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from envlabel.config import parse_duration
from envlabel.errors import EnvlabelError
from envlabel.model import Override
from envlabel.targets import parse_target
from labelers.taxonomy import Taxonomy
from service.clikit import EXIT_USAGE, config_option, emit_json, fail, get_config, open_configured_store, parse_time
from service.pipeline import relabel, relabel_subtree, utcnow
from service.query import Query
from store.sql import Store, ts


class InvalidOverride(EnvlabelError, ValueError):
    """The override request is malformed (unknown environment, empty reason, expiry in the past)."""


class NoOverride(EnvlabelError, LookupError):
    """There is no override on the target to remove."""


def override_json(override: Override, now: datetime) -> dict[str, Any]:
    return {"target": override.target, "environment": override.environment, "reason": override.reason,
            "author": override.author, "created_at": ts(override.created_at),
            "expires_at": ts(override.expires_at) if override.expires_at else None,
            "active": override.active(now)}


def parse_expiry(value: str, now: datetime) -> datetime:
    """``--expires``: an ISO time, or a duration from ``now`` (``2h``, ``7d``)."""
    try:
        return now + parse_duration(value)
    except ValueError:
        pass
    try:
        return parse_time(value)
    except click.BadParameter:
        raise InvalidOverride(f"--expires {value!r} is neither a duration (2h, 7d) nor a time "
                              "(2026-01-31T12:00:00Z)") from None


def _stored_id(store: Store, raw_target: str) -> str:
    return store.resolve_id(parse_target(raw_target).id)


def set_override(query: Query, target: str, environment: str, *, reason: str, author: str,
                 expires_at: datetime | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Set (or replace) the override on ``target`` and relabel its subtree.

    Returns ``{"override", "seen", "relabeled", "label", "note"?}``. Raises TargetError or
    InvalidOverride (both ValueError: a 400 / usage error)."""
    now = now or utcnow()
    environments = query.config.environments
    if environment not in environments:
        raise InvalidOverride(f"environment {environment!r} is not configured; use one of {', '.join(environments)}")
    if not reason.strip():
        raise InvalidOverride("an override needs a reason (--reason): say why, for the people who audit it")
    if not author.strip():
        raise InvalidOverride("an override needs an author (--by): who is vouching for it")
    if expires_at is not None and expires_at <= now:
        raise InvalidOverride(f"expiry {ts(expires_at)} is not in the future; give a later time or a duration "
                              "such as 2h or 7d")
    target_id = _stored_id(query.store, target)
    override = Override(target_id, environment, reason.strip(), author.strip(), now, expires_at)
    with query.store.transaction() as tx:
        tx.set_override(override)
    return _after_change(query, target, target_id, now) | {"override": override_json(override, now)}


def remove_override(query: Query, target: str, *, author: str, reason: str = "",
                    now: datetime | None = None) -> dict[str, Any]:
    """Remove the override on ``target`` and relabel its subtree. Raises NoOverride if there is none."""
    now = now or utcnow()
    if not author.strip():
        raise InvalidOverride("removing an override needs an author (--by)")
    target_id = _stored_id(query.store, target)
    with query.store.transaction() as tx:
        removed = tx.remove_override(target_id, author.strip(), reason.strip() or "removed", now)
    if not removed:
        raise NoOverride(f"there is no override on {target_id}; `envlabel override list` shows them")
    return _after_change(query, target, target_id, now) | {"removed": target_id}


def _after_change(query: Query, raw_target: str, target_id: str, now: datetime) -> dict[str, Any]:
    relabeled = relabel_subtree(query.store, query.taxonomy, [target_id], now)
    stored = query.store.get(target_id)
    body: dict[str, Any] = {"target": target_id, "seen": stored is not None, "relabeled": relabeled,
                            "label": query.label(target_id, now)}
    if stored is None:
        body["note"] = (f"{target_id} has not been seen by any scan yet; the override applies to it and "
                        "everything below it as soon as a scan finds them")
    elif stored.tombstoned_at is not None:
        body["note"] = f"{target_id} is gone since {ts(stored.tombstoned_at)}; the override applies if it returns"
    return body


def list_overrides(query: Query, include_all: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """``{"overrides": [...]}`` in force now; with ``include_all`` also expired ones and every change event."""
    now = now or utcnow()
    overrides = sorted(query.store.overrides().values(), key=lambda o: o.target)
    body: dict[str, Any] = {"overrides": [override_json(o, now) for o in overrides
                                          if include_all or o.active(now)]}
    if include_all:
        body["events"] = query.store.override_events()
    return body


def relabel_lapsed(store: Store, taxonomy: Taxonomy, now: datetime | None = None) -> int:
    """Persist the labels of targets whose override expired (for the scheduler; reads never wait for it)."""
    now = now or utcnow()
    with store.transaction() as tx:
        lapsed = tx.lapsed_labels(now)
        if not lapsed:
            return 0
        changes, _ = relabel(tx, taxonomy, now, None, targets=lapsed)
    return changes


# -- CLI ----------------------------------------------------------------------------------------


def _run(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = call(*args, **kwargs)
    except InvalidOverride as exc:
        fail(str(exc), EXIT_USAGE)
    except NoOverride as exc:
        fail(str(exc))
    return result


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
    try:
        expires_at = parse_expiry(expires, now) if expires else None
    except InvalidOverride as exc:
        fail(str(exc), EXIT_USAGE)
    body = _run(set_override, query, target, environment, reason=reason, author=author, expires_at=expires_at,
                now=now)
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
    body = _run(remove_override, query, target, author=author, reason=reason)
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
