"""Time as the use cases read it: now in UTC, and a moment a person wrote."""

from __future__ import annotations

from datetime import UTC, datetime

from envlabel.service.core.errors import InvalidRequest


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_time(value: str, field: str = "at") -> datetime:
    """An ISO 8601 time (``2026-01-31T12:00:00Z``); a time without a zone is UTC. Raises InvalidRequest."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(field, f"{value!r} is not a time; write it as 2026-01-31T12:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
