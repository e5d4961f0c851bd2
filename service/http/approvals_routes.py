"""``/v1/approvals``: ask for an approval, read them, approve or deny one (:mod:`envlabel.service.core.approvals`).

- ``POST /v1/approvals`` creates (or reuses) the caller's request bound to exactly its principal, the action, the
  target and the digest of the parameters; a ``require_approval`` check does the same by itself.
- ``GET /v1/approvals[?status=]``: an admin reads every request, a reader token its own principal's;
  ``GET /v1/approvals/{id}``: an admin, or the principal that asked.
- ``POST /v1/approvals/{id}/approve`` and ``/deny`` need an admin token (the front door's ADMIN_ROUTES). With
  api.tokens the decider is always the token's principal: a ``by`` naming anyone else is refused (a token must
  not sign for another person); without tokens ``by`` is required. The requester can never decide its own
  request (the use case refuses it, whatever the face).

Errors (no such request, a refusal) go through the one table (:mod:`envlabel.service.core.errors`).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi import Query as Param
from fastapi.responses import Response

from envlabel.service.core import approvals
from envlabel.service.core.authority import Authority
from envlabel.service.http.answers import error_response, json_response
from envlabel.service.http.callers import caller_of, is_admin, tokens_required
from envlabel.service.http.models import (
    ApprovalDecisionRequest,
    ApprovalDoc,
    ApprovalRequest,
    ApprovalsDoc,
    documented,
)


def add_approval_routes(app: FastAPI, authority: Authority) -> None:
    @app.post("/v1/approvals", tags=["approvals"], responses=documented(ApprovalDoc, 400, 403, 409, 422))
    def post_approval(request: Request, body: ApprovalRequest) -> Response:
        """Ask for an approval of ``action`` on ``target`` with these ``parameters`` for the caller's principal:
        the pending request for exactly that call is reused, else one is created and the approvers notified.
        Once approved, the same call (POST /v1/check with the same target, action and parameters) is allowed
        once."""
        record = approvals.request_approval(authority, caller_of(request.scope), body.target, body.action,
                                            parameters=body.parameters, reason=body.reason)
        return json_response(record)

    @app.get("/v1/approvals", tags=["approvals"], responses=documented(ApprovalsDoc, 422))
    def get_approvals(request: Request, status: str | None = Param(
            None, description="pending, approved, denied, spent or expired.")) -> Response:
        """Approval requests, newest first: every principal's for an admin, a reader token's own otherwise."""
        principal = None if is_admin(request.scope) else caller_of(request.scope).principal
        return json_response(approvals.list_approvals(authority.query, status, principal))

    @app.get("/v1/approvals/{approval_id}", tags=["approvals"], responses=documented(ApprovalDoc, 403, 404))
    def get_approval(request: Request, approval_id: str) -> Response:
        """One approval request (an admin, or the principal that asked): poll it until it is approved or
        denied, then retry the same call."""
        record = approvals.get_approval(authority.query, approval_id)
        own = caller_of(request.scope).principal
        if not is_admin(request.scope) and record["principal"] != own:
            return error_response(403, "forbidden", f"approval {approval_id} was asked by another principal; a "
                                                    f"reader token reads only its own ({own!r}): use an admin token")
        return json_response(record)

    decided = documented(ApprovalDoc, 400, 403, 404, 409, 422)

    @app.post("/v1/approvals/{approval_id}/approve", tags=["approvals"], responses=decided)
    def post_approve(request: Request, approval_id: str, body: ApprovalDecisionRequest) -> Response:
        """Approve a pending request (admin): the requester's identical call is then allowed once, within the
        request's lifetime. The requester cannot approve its own request."""
        return _decide(request, approval_id, body, approve=True)

    @app.post("/v1/approvals/{approval_id}/deny", tags=["approvals"], responses=decided)
    def post_deny(request: Request, approval_id: str, body: ApprovalDecisionRequest) -> Response:
        """Deny a pending request (admin; a reason is required); the requester's call stays refused."""
        return _decide(request, approval_id, body, approve=False)

    def _decide(request: Request, approval_id: str, body: ApprovalDecisionRequest, *, approve: bool) -> Response:
        by = decider(request, body.by)
        if isinstance(by, Response):
            return by
        decide = approvals.approve if approve else approvals.deny
        return json_response(decide(authority, approval_id, by=by, reason=body.reason))


def decider(request: Request, by: str | None) -> str | Response:
    """Who approves or denies: with tokens always the token's principal (another ``by`` is a 403); without
    tokens the ``by`` the caller names (required: a 400 when missing)."""
    if tokens_required(request.scope):
        own = caller_of(request.scope).principal
        if by is not None and by != own:
            return error_response(403, "forbidden", f"by {by[:100]!r} is not this token's principal {own!r}: with "
                                                    "api.tokens the decider is always the token's principal; leave "
                                                    "by out, or decide with that person's own admin token")
        return own
    if not by:
        return error_response(400, "missing decider", "pass by: the name of the person who decides (this server "
                                                      "has no api.tokens, so nothing else says who it is)")
    return by
