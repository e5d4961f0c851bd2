"""Listings shared by the HTTP API and the MCP tools: labeled resources (paginated) and audit findings.

Pages are keyed by resource id (the store lists in id order), so a cursor stays valid while
scans add or remove resources: the next page starts after the last id returned. The cursor
is that id, base64url-encoded so it is opaque and safe in a query string.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from envlabel.model import UNKNOWN
from envlabel.service.core.clock import utcnow
from envlabel.service.core.errors import InvalidRequest
from envlabel.service.core.query import Query, label_json

PROVIDERS = ("aws", "gcp", "kubernetes")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("cursor", "not a cursor this server issued; pass next_cursor from the previous "
                                       "page unchanged, or omit it to start from the beginning") from None


def list_resources(query: Query, environment: str | None = None, provider: str | None = None,
                   limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> dict[str, Any]:
    """``{"resources": [label JSON...], "next_cursor": str | None}``; raises InvalidRequest on bad filters."""
    environments = (*query.config.environments, UNKNOWN)
    if environment is not None and environment not in environments:
        raise InvalidRequest("environment", f"{environment!r} is not one of {', '.join(environments)}")
    if provider is not None and provider not in PROVIDERS:
        raise InvalidRequest("provider", f"{provider!r} is not one of {', '.join(PROVIDERS)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest("limit", f"must be between 1 and {MAX_LIMIT}; page with next_cursor")
    after = decode_cursor(cursor) if cursor else ""
    rows = query.store.list_labels(environment=environment, provider=provider, after=after, limit=limit + 1)
    page = rows[:limit]
    now = utcnow()
    return {
        "resources": [label_json(s.resource.id, s, s.resolution, query.is_stale(s, now)) for s in page],
        "next_cursor": encode_cursor(page[-1].resource.id) if len(rows) > limit else None,
    }


def list_findings(query: Query, kind: str | None = None, severity: str | None = None,
                  provider: str | None = None) -> dict[str, Any]:
    """``{"findings": [finding JSON...]}`` from the audit; raises InvalidRequest on a bad filter."""
    from envlabel.service.core.audit import (  # the audit reads the whole estate: load it when asked
        check_filters,
        findings,
    )

    for field, only in (("kind", (kind, None, None)), ("severity", (None, severity, None)),
                        ("provider", (None, None, provider))):
        try:
            check_filters(*only)
        except ValueError as exc:
            raise InvalidRequest(field, str(exc)) from None
    return {"findings": findings(query, kind=kind, severity=severity, provider=provider)}
