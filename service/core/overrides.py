"""Overrides: a person's word on a target's environment, with reason, author and optional expiry.

The functions here are what the CLI (``envlabel override set|rm|list``) and the HTTP API
(``POST/DELETE /v1/overrides``) call. Setting or removing an override relabels the target's
subtree in the same call, so the next read already reflects it; every change is also kept in
``override_events``. An expired override stops counting at once: labels it took part in carry
``valid_until`` and are recomputed on read (``Query.label``); :func:`relabel_lapsed` and the next
scan persist the change.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from envlabel.config import DurationTooLong, format_duration, parse_duration
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Override
from envlabel.service.core.clock import TimeOutOfRange, parse_time, utcnow
from envlabel.service.core.errors import InvalidOverride, InvalidRequest, NoOverride
from envlabel.service.core.pipeline import relabel, relabel_subtree
from envlabel.service.core.query import Query
from envlabel.service.core.text import BadText, plain_text
from envlabel.store.codec import ts
from envlabel.store.sql import Store
from envlabel.targets import parse_target


def override_json(override: Override, now: datetime) -> dict[str, Any]:
    return {"target": override.target, "environment": override.environment, "reason": override.reason,
            "author": override.author, "created_at": ts(override.created_at),
            "expires_at": ts(override.expires_at) if override.expires_at else None,
            "active": override.active(now)}


#: the furthest ahead an override may expire; one meant to last longer should not expire at all
MAX_EXPIRY = timedelta(days=3650)
MAX_REASON = 1000
MAX_AUTHOR = 200
#: characters that show nothing: controls, format (zero-width) characters, spaces and separators


def parse_expiry(value: str, now: datetime) -> datetime:
    """``--expires``: an ISO time, or a duration from ``now`` (``2h``, ``7d``), at most :data:`MAX_EXPIRY` ahead.

    Raises InvalidOverride (never OverflowError, however far ahead ``value`` is)."""
    limit = f"at most {format_duration(MAX_EXPIRY)} ahead; leave --expires out for an override that does not expire"
    try:
        duration = parse_duration(value)
    except DurationTooLong:
        raise InvalidOverride(f"--expires {value!r} is too far ahead: {limit}") from None
    except ValueError:
        pass  # not a duration: perhaps a time
    else:
        if duration > MAX_EXPIRY:
            raise InvalidOverride(f"--expires {value!r} is too far ahead: {limit}")
        return now + duration
    try:
        moment = parse_time(value)
    except TimeOutOfRange as exc:
        raise InvalidOverride(f"--expires {value!r} is too far ahead: {limit}" if exc.late else
                              f"--expires {value!r} is not in the future; give a later time or a duration such "
                              "as 2h or 7d") from None
    except InvalidRequest:
        raise InvalidOverride(f"--expires {value!r} is neither a duration (2h, 7d) nor a time "
                              "(2026-01-31T12:00:00Z)") from None
    # compare by difference: subtracting aware times never overflows
    if moment - now > MAX_EXPIRY:
        raise InvalidOverride(f"--expires {value!r} is too far ahead: {limit}")
    if moment - now <= timedelta(0):
        raise InvalidOverride(f"--expires {value!r} is not in the future; give a later time or a duration such "
                              "as 2h or 7d")
    return moment


def check_text(value: str, what: str, limit: int, *, lines: bool = False) -> str:
    """:func:`envlabel.service.core.text.plain_text`, raising InvalidOverride."""
    try:
        return plain_text(value, what, limit, lines=lines)
    except BadText as exc:
        raise InvalidOverride(str(exc)) from None


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
    reason = check_text(reason, "reason (--reason)", MAX_REASON, lines=True)
    author = check_text(author, "author (--by)", MAX_AUTHOR)
    if expires_at is not None and expires_at - now <= timedelta(0):  # isoformat: ts() may overflow year 1
        raise InvalidOverride(f"expiry {expires_at.isoformat()} is not in the future; give a later time or a "
                              "duration such as 2h or 7d")
    if expires_at is not None and expires_at - now > MAX_EXPIRY:
        raise InvalidOverride(f"expiry {expires_at.isoformat()} is more than {format_duration(MAX_EXPIRY)} ahead; "
                              "leave the expiry out for an override that does not expire")
    target_id = _stored_id(query.store, target)
    override = Override(target_id, environment, reason, author, now, expires_at)
    with query.store.transaction() as tx:
        tx.set_override(override)
    return _after_change(query, target, target_id, now) | {"override": override_json(override, now)}


def remove_override(query: Query, target: str, *, author: str, reason: str = "",
                    now: datetime | None = None) -> dict[str, Any]:
    """Remove the override on ``target`` and relabel its subtree. Raises NoOverride if there is none."""
    now = now or utcnow()
    if not author.strip():
        raise InvalidOverride("removing an override needs an author (--by)")
    author = check_text(author, "author (--by)", MAX_AUTHOR)
    reason = check_text(reason, "reason (--reason)", MAX_REASON, lines=True) if reason.strip() else "removed"
    target_id = _stored_id(query.store, target)
    with query.store.transaction() as tx:
        removed = tx.remove_override(target_id, author, reason, now)
    if not removed:
        raise NoOverride(f"there is no override on {target_id}; `envlabel override list` shows them")
    return _after_change(query, target, target_id, now) | {"removed": target_id}


def _after_change(query: Query, raw_target: str, target_id: str, now: datetime) -> dict[str, Any]:
    relabeled = relabel_subtree(query.store, query.taxonomy, [target_id], now)
    if relabeled:  # the generated policies follow every label change (opt-in: config export.directory)
        from envlabel.service.core.export import export_configured

        export_configured(query)
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
