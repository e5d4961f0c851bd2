"""Time as the use cases read it: now in UTC, and a moment a person wrote."""

from __future__ import annotations

from datetime import UTC, datetime

from envlabel.service.core.errors import InvalidRequest


def utcnow() -> datetime:
    return datetime.now(UTC)


class TimeOutOfRange(InvalidRequest):
    """A time that is written correctly but is not one in UTC (``9999-12-31T23:59:59-23:59``)."""

    def __init__(self, field: str, message: str, *, late: bool) -> None:
        #: past the last moment envlabel can store (else before the first)
        self.late = late
        super().__init__(field, message)


def parse_time(value: str, field: str = "at") -> datetime:
    """An ISO 8601 time (``2026-01-31T12:00:00Z``) in UTC; a time without a zone is UTC.

    Raises InvalidRequest (TimeOutOfRange for a time that has no UTC moment; never OverflowError)."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(field, f"{value!r} is not a time; write it as 2026-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:  # every store and comparison reads the time in UTC, and year 1 or 9999 may have none
        return moment.astimezone(UTC)
    except OverflowError:
        raise TimeOutOfRange(field, f"{value!r} is outside the times envlabel can store (years 1 to 9999 in "
                                    "UTC)", late=moment.year == datetime.max.year) from None
