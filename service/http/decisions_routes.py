"""``GET /v1/decisions`` and ``GET /v1/decisions/would-block``: the decision log, for the auditor and the principal.

An admin token (and every caller of a server without tokens) reads every principal's decisions. A reader token
reads only its own principal's: without a ``principal`` filter the answer is filtered to it, and asking for another
principal's is a 403 that says so. The would-block report (shadow mode: what enforcement would have stopped, per
principal and environment) is the admin's, or a reader's for itself.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi import Query as Param
from fastapi.responses import Response

from envlabel.service.core.decision_log import list_decisions, would_block_report
from envlabel.service.core.query import Query
from envlabel.service.http.answers import error_response, json_response
from envlabel.service.http.callers import caller_of, is_admin
from envlabel.service.http.models import DecisionsDoc, ErrorDoc, documented

#: a page of the decision log (``limit``); the default answers "what happened lately" in one page
DEFAULT_DECISIONS, MAX_DECISIONS = 100, 1000


def add_decision_routes(app: FastAPI, query: Query) -> None:
    @app.get("/v1/decisions", tags=["decisions"], responses=documented(DecisionsDoc, 403, 422))
    def get_decisions(request: Request, *, target: str | None = None,
                      principal: str | None = Param(None, description="Only this principal's (a reader token: "
                                                                      "its own only)."),
                      decision: str | None = Param(None, description="allow, require_approval or deny."),
                      since: str | None = Param(None, description="A time (2026-01-31T12:00:00Z) or a duration "
                                                                  "back from now (2h, 7d)."),
                      would_block: bool = Param(False, description="Only what enforcement would have stopped "
                                                                   "(audit mode and not allow)."),
                      limit: int = Param(DEFAULT_DECISIONS, ge=1, le=MAX_DECISIONS),
                      cursor: str | None = None) -> Response:
        """Recorded decisions, newest first, a page at a time (follow ``next_cursor`` until it is null): who did
        what to which target, decided as which environment, by which rule, and the label it was decided from."""
        principal, refused = _visible_principal(request, principal)
        if refused is not None:
            return refused
        return json_response(list_decisions(query, target=target, principal=principal, decision=decision,
                                            since=since, would_block=would_block, limit=limit, cursor=cursor))

    @app.get("/v1/decisions/would-block", tags=["decisions"], responses={403: {"model": ErrorDoc},
                                                                         422: {"model": ErrorDoc}})
    def get_would_block(request: Request, since: str | None = Param(
            None, description="A time or a duration back from now (2h, 7d); default: everything kept.")) -> Response:
        """Shadow mode's report: how many decisions enforcement would have stopped, per principal and environment
        (admin; a reader token sees its own principal's only)."""
        report = would_block_report(query, since=since)
        if not is_admin(request.scope):
            own = caller_of(request.scope).principal
            rows = [row for row in report["by"] if row.get("principal") == own]
            report = {**report, "by": rows, "total": sum(sum(row["decisions"].values()) for row in rows)}
        return json_response(report)


def _visible_principal(request: Request, principal: str | None) -> tuple[str | None, Response | None]:
    """The principal filter a caller may use: any for an admin; its own for a reader (imposed when not given)."""
    if is_admin(request.scope):
        return principal, None
    own = caller_of(request.scope).principal
    if principal is None or principal == own:
        return own, None
    return None, error_response(403, "forbidden", f"a reader token reads only its own principal's decisions "
                                                  f"({own!r}), not {principal!r}: drop the principal filter, or "
                                                  "ask with an admin token")
