"""The HTTP API's request bodies (pydantic, ``extra="forbid"``) and the documented shapes of its answers.

The answers themselves are built as plain dicts by the query layer and serialized with orjson;
the ``*Doc`` models only describe them in the OpenAPI document (``responses=``), so no request
pays for validating its own response.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabelsRequest(Body):
    targets: list[str] = Field(min_length=1, description="Target ids, in any accepted form.")


class CheckRequest(Body):
    target: str = Field(description="The target the action would touch.")
    action: str = Field(min_length=1, max_length=256,
                        description="An AWS operation (rds:DeleteDBInstance) or a Kubernetes verb (delete).")
    contents: bool = Field(False, description="Decide as the strictest of the target and every live resource "
                                              "stored below it (for a write that names no resource of its own).")
    parameters: dict[str, Any] | None = Field(
        None, description="The call's own parameters (a boto3 operation's, JSON): an approval is bound to their "
                          "digest, so it allows exactly this call, not another one on the same target.")


class CheckCommandRequest(Body):
    # no length limits of their own: api.max_body_bytes bounds the body (413)
    command: str | None = Field(None, min_length=1,
                                description="A shell command line, split with shell rules (&&, ||, ;, pipes, "
                                            "bash -c, sudo, env VAR=...).")
    argv: list[str] | None = Field(None, min_length=1,
                                   description="One command as an argument vector (argv[0] is the program).")
    environ: dict[str, str] | None = Field(
        None, description="The caller's variables that name a region, profile or project (AWS_REGION, "
                          "AWS_PROFILE, CLOUDSDK_CORE_PROJECT...); others are ignored. The server reads none of its "
                          "own files for a caller: -f manifests, profiles and kubeconfigs are resolved where the "
                          "command is planned (plan it there with `envlabel check-command` or the hooks).")

    @model_validator(mode="after")
    def _one_command(self) -> CheckCommandRequest:
        if (self.command is None) == (self.argv is None):
            raise ValueError("give exactly one of command (a command line) or argv (an argument vector)")
        return self


class OverrideRequest(Body):
    target: str
    environment: str
    reason: str = Field(min_length=1)
    author: str | None = Field(None, description="Who vouches for it; defaults to the token's name.")
    expires: str | None = Field(None, description="A time (2026-01-31T12:00:00Z) or a duration (2h, 7d).")


class ApprovalRequest(Body):
    target: str = Field(description="The target the action would touch.")
    action: str = Field(min_length=1, max_length=256, description="The action to be approved, as POST /v1/check.")
    parameters: dict[str, Any] | None = Field(None, description="The call's parameters, as POST /v1/check: the "
                                                                "approval allows only the same ones.")
    reason: str = Field("", description="Why the caller needs it (shown to the approvers).")


class ApprovalDecisionRequest(Body):
    by: str | None = Field(None, min_length=1, max_length=200,
                           description="Who decides. With api.tokens it is always the token's principal (another "
                                       "name is refused); without tokens it is required.")
    reason: str = Field("", description="Why (recorded, and shown to the requester).")


class EvidenceDoc(BaseModel):
    signal: str
    environment: str
    source: str
    detail: str


class LabelDoc(BaseModel):
    target: str
    found: bool
    environment: str = Field(description="production, staging, sandbox (as configured) or unknown.")
    authoritative: bool
    decided_by: str
    conflict: bool
    stale: bool
    observed_at: str | None
    provider: str
    kind: str | None
    name: str | None
    parent: str | None
    evidence: list[EvidenceDoc]
    facts: dict[str, Any] = Field(default_factory=dict, description="What decides whether a destructive change "
                                  "can be undone (deletion protection, backups, versioning, reclaim policy...), as "
                                  "the last scan read it; unreadable lists keys it could not read. {}: none known.")


class RecoveryDoc(BaseModel):
    reversible: bool | Literal["unknown"] = Field(description="true: recoverable (how says how); false: it cannot "
                                                              "be undone; unknown: facts are missing (decided as "
                                                              "irreversible).")
    why: list[str]
    how: str | None
    loses: str | None
    destroys_data: bool = Field(description="A modify that destroys data (backups to 0, versioning suspended, an "
                                            "expiration): decided as a delete.")


class LookalikeDoc(BaseModel):
    target: str
    environment: str
    kind: str | None
    name: str | None
    note: str = Field(description="orders-db also exists in staging: arn:...")


class ApprovalRefDoc(BaseModel):
    id: str = Field(description="apr-... : quote it to the approvers; retry the same call once it is approved.")
    status: str = Field(description="pending, approved, denied, spent or expired.")
    expires_at: str
    url: str | None = Field(None, description="The approval page of the request (config approvals.base_url).")


class LabelsDoc(BaseModel):
    labels: list[LabelDoc]


class CheckDoc(BaseModel):
    target: str
    action: str
    action_class: str = Field(description="read, create, modify or delete (unrecognized actions: delete).")
    environment: str = Field(description="The environment decided as (production if unknown or stale).")
    decision: str = Field(description="allow, require_approval or deny.")
    reversible: bool = Field(description="recovery.reversible is true.")
    reasons: list[str]
    approvers: list[str]
    label: LabelDoc
    understood_as: str | None = Field(description="The canonical name the action was understood as "
                                                  "(rds:DeleteDBInstance, delete pods); null when it was not "
                                                  "recognized, and so decided as a delete.")
    rule: str = Field(description="The rule that decided: policy.ENV.CLASS, grants.PRINCIPAL.ENV, approval:ID.")
    principal: str | None = Field(None, description="Who acts: the token's principal (a claim only narrows).")
    claimed_principal: str | None = Field(None, description="X-Envlabel-Principal when it differs from principal.")
    mode: str | None = Field(None, description="enforce, or audit: reported and logged, not enforced.")
    lookalikes: list[LookalikeDoc] | None = Field(None, description="Same-named resources in other environments.")
    approval: ApprovalRefDoc | None = Field(None, description="require_approval: the request to approve; allow "
                                                              "by approval: the one spent.")
    recovery: RecoveryDoc | None = Field(None, description="What the action would cost on this target, from its "
                                                           "scanned facts and the call's parameters.")


class UnparsedDoc(BaseModel):
    tool: str
    command: str
    reason: str = Field(description="What could not be understood, and how to make it understood.")
    decision: str = Field(description="require_approval or deny: what is not understood is decided fail closed.")


class CheckCommandDoc(BaseModel):
    decision: str = Field(description="allow, require_approval or deny: the strictest of every operation and "
                                      "everything not understood (a command that runs no infrastructure tool: "
                                      "allow).")
    operations: list[CheckDoc]
    unparsed: list[UnparsedDoc]


class ResourcesDoc(BaseModel):
    resources: list[LabelDoc]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class AdmissionStatusDoc(BaseModel):
    code: int = Field(description="403 when refused.")
    reason: str
    message: str = Field(description="What was refused, the environment and evidence, and how to get approval.")


class AdmissionResponseDoc(BaseModel):
    uid: str = Field(description="The request's uid.")
    allowed: bool
    status: AdmissionStatusDoc | None = Field(None, description="Present when refused.")
    warnings: list[str] | None = Field(None, description="Set for a dryRun request: decided, not counted.")
    auditAnnotations: dict[str, str] = Field(description="decision: allow, require_approval, deny or exempt.")


class AdmissionReviewDoc(BaseModel):
    apiVersion: str = Field(description="admission.k8s.io/v1")
    kind: str = Field(description="AdmissionReview")
    response: AdmissionResponseDoc


class DecisionEntryDoc(BaseModel):
    id: int
    at: str
    principal: str
    claimed_principal: str | None
    groups: list[str]
    interface: str = Field(description="cli, http, mcp, guard, hook, admission, check-command or page.")
    mode: str
    action: str
    action_class: str
    target: str
    target_id: str | None
    environment: str = Field(description="The environment it was decided as.")
    decision: str = Field(description="What was decided; in audit mode what would have been enforced.")
    rule: str
    reasons: list[str]
    label_snapshot: int | None = Field(description="The label_history id of the target's label at that moment.")
    approval_id: str | None
    dry_run: bool
    would_block: bool = Field(description="Audit mode and not allow: what enforcement would have stopped.")


class DecisionsDoc(BaseModel):
    decisions: list[DecisionEntryDoc] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class ApprovalDoc(BaseModel):
    id: str
    status: str = Field(description="pending, approved, denied, spent or expired.")
    principal: str = Field(description="Who asked: the principal whose identical call it allows, once.")
    action: str
    target: str
    target_id: str
    parameters_digest: str
    environment: str
    created_at: str
    expires_at: str
    decided_by: str | None
    decided_at: str | None
    decision_reason: str | None
    spent_at: str | None
    check: dict[str, Any] = Field(description="The check it was asked from (reasons, label, lookalikes...).")
    url: str | None


class ApprovalsDoc(BaseModel):
    approvals: list[ApprovalDoc]


class ErrorDoc(BaseModel):
    error: str
    message: str = Field(description="What to do about it.")


def documented(model: type[BaseModel], *statuses: int) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {200: {"model": model}}
    responses.update({s: {"model": ErrorDoc} for s in statuses})
    return responses



def document_front_door(schema: dict[str, Any], *, open_paths: Collection[str],
                        admin_routes: Collection[tuple[str, str]], body_methods: Collection[str],
                        tokens: bool) -> dict[str, Any]:
    """Add to an OpenAPI document the answers the front door (``Gate``) may give before a route runs, for this
    server: with tokens 401 (and 403 on admin routes), without them 421 (and 403 for a cross-origin write);
    408 and 413 wherever a body is read; and 503 wherever the store is read (it is unavailable or found corrupt:
    treat the target as production). Returns ``schema``, changed in place."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDoc"}}}
    schema.setdefault("components", {}).setdefault("schemas", {}).setdefault("ErrorDoc", ErrorDoc.model_json_schema())
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            verb = method.upper()
            extra: dict[int, str] = {}
            if tokens and path not in open_paths:
                extra[401] = "No bearer token, an empty or too short one, or one not in api.tokens."
                if (verb, path) in admin_routes:
                    extra[403] = "The token's role is reader; this route needs admin."
            if not tokens:
                extra[421] = "The Host header does not name this machine (no api.tokens: loopback only)."
                if verb in body_methods:
                    extra[403] = "A cross-origin request: its Origin is not this machine (no api.tokens)."
            if verb in body_methods:
                extra[408] = "The body did not arrive within api.read_timeout."
                extra[413] = "The body is larger than api.max_body_bytes."
            if path.startswith("/v1/") or path == "/readyz":
                extra[503] = "The store is unavailable or corrupt; treat every target as production."
            responses = operation.setdefault("responses", {})
            for status, description in extra.items():
                responses.setdefault(str(status), {"description": description, "content": error})
    return schema
