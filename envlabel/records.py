"""The records envlabel answers with: the label JSON and the check JSON (docs/contracts.md), as types.

They travel from the query layer to every face (CLI ``--json``, HTTP, MCP) and back to the SDK, so
a field added here is added everywhere at once; none is ever removed or renamed.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

#: what the check answers (its ``decision``), per environment and action class in the policy
Decision = Literal["allow", "require_approval", "deny"]
#: the four classes every action falls into
ActionClass = Literal["read", "create", "modify", "delete"]
#: enforce: decisions block; audit (shadow mode): nothing is blocked, every decision is logged as it would be
Mode = Literal["enforce", "audit"]
#: where a check came from, as the decision log records it
Interface = Literal["cli", "http", "mcp", "guard", "hook", "admission", "check-command", "page"]
#: the life of an approval request
ApprovalStatus = Literal["pending", "approved", "denied", "spent", "expired"]


class EvidenceRecord(TypedDict):
    """One signal behind a label: ``{signal, environment, source, detail}``."""

    signal: str
    environment: str
    source: str
    detail: str


class LookalikeRecord(TypedDict):
    """A resource in another environment whose name is the same, or the same once environment words are
    stripped (``orders-db``, ``orders-prod-db``): the twin an agent or an approver may mistake it for."""

    target: str
    environment: str
    kind: str
    name: str
    #: "orders-db also exists in staging: arn:aws:rds:..."
    note: str


class ApprovalRef(TypedDict):
    """The approval request a ``require_approval`` answer carries (or the approval it spent)."""

    id: str
    status: ApprovalStatus
    expires_at: str
    #: the approval page of this request, when the server knows its own address (config approvals.base_url)
    url: str | None


class PathNodeRecord(TypedDict):
    """One container on a label's evidence chain (``get --json``, ``GET /v1/label?explain=true``): the target
    first, then each parent up to the root, with the signals that node carries itself."""

    id: str
    kind: str | None
    name: str | None
    #: False: a parent no scan has observed (only an override can speak for it)
    found: bool
    #: the strictest environment its own signals name (overrides, tags, configured environment, declaring name);
    #: None: no signal of its own (``name`` evidence never decides)
    environment: str | None
    #: its own signals, as the label's ``evidence`` entries are written (names included, as evidence only)
    signals: list[EvidenceRecord]
    #: environment tags it carries whose value names no environment (``Environment=nonprod``): seen, not read
    unread: list[str]
    #: True above the nearest override: an override hides everything above it
    hidden: bool


class LabelRecord(TypedDict):
    """The label JSON. ``found: false`` (never seen, or gone: then ``gone_at``) means treat it as production."""

    target: str
    found: bool
    environment: str
    authoritative: bool
    decided_by: str
    conflict: bool
    stale: bool
    observed_at: str | None
    provider: str
    kind: str | None
    name: str | None
    parent: str | None
    evidence: list[EvidenceRecord]
    #: the stored canonical id (``target`` is as the caller wrote it)
    id: NotRequired[str]
    #: when a complete scan last saw a tombstoned target
    gone_at: NotRequired[str]
    #: the moment a past label (``get --at``) was asked for
    at: NotRequired[str]
    #: same-named resources in other environments (the current label only, not ``get --at``)
    lookalikes: NotRequired[list[LookalikeRecord]]
    #: what decides whether a destructive change can be undone, as the last scan read it (deletion protection,
    #: backups, versioning, reclaim policy...; keys by kind in docs/recovery.md; ``unreadable``: keys it could not
    #: read). Always present in this release's answers (``{}``: none known); NotRequired for older servers' labels
    facts: NotRequired[dict[str, Any]]
    #: the evidence chain, target first (``get --json`` and ``GET /v1/label?explain=true`` only)
    path: NotRequired[list[PathNodeRecord]]


class RecoveryRecord(TypedDict):
    """What the action would cost on this target: can it be undone, how, and what is lost."""

    #: true: recoverable (``how`` says how); false: it cannot be undone; "unknown": facts are missing (decided as
    #: false by the policy)
    reversible: bool | Literal["unknown"]
    why: list[str]
    how: str | None
    loses: str | None
    #: a modify that destroys data (backups to zero, versioning suspended, an expiration): the delete class
    destroys_data: bool


class CheckRecord(TypedDict):
    """The check JSON: the decision on one action against one target, with why."""

    target: str
    action: str
    action_class: ActionClass
    environment: str
    decision: Decision
    reversible: bool
    reasons: list[str]
    approvers: list[str]
    label: LabelRecord
    #: the canonical name the action was understood as (``rds:DeleteDBInstance``, ``delete pods``);
    #: null when it was not recognized (and so is decided as a delete)
    understood_as: str | None
    #: which rule decided: ``policy.production.delete``, ``grants.ci-deployer.production``, ``approval:apr-...``
    rule: str
    #: who is acting, as the server established it (the token's principal; a claim only without tokens)
    principal: NotRequired[str]
    #: ENVLABEL_PRINCIPAL as the caller sent it, when it differs from ``principal`` (it can only narrow)
    claimed_principal: NotRequired[str]
    #: audit: the decision is reported and logged, never enforced (shadow mode)
    mode: NotRequired[Mode]
    #: same-named resources in other environments (the label's lookalikes, repeated where agents look)
    lookalikes: NotRequired[list[LookalikeRecord]]
    #: require_approval: the request to approve (created or reused); allow by approval: the one spent
    approval: NotRequired[ApprovalRef]
    #: reversibility of this action on this target, from its scanned facts (``reversible`` repeats its verdict)
    recovery: NotRequired[RecoveryRecord]


class DecisionEntry(TypedDict):
    """One entry of the decision log (``GET /v1/decisions``, ``envlabel decisions --json``)."""

    id: int
    at: str
    principal: str
    claimed_principal: str | None
    groups: list[str]
    interface: Interface
    mode: Mode
    action: str
    action_class: ActionClass
    target: str
    target_id: str | None
    #: the environment it was decided as (production for anything unknown, stale or never seen)
    environment: str
    #: what was decided; in audit mode what would have been enforced
    decision: Decision
    rule: str
    reasons: list[str]
    #: the label_history id of the target's label at that moment (``envlabel history`` shows it)
    label_snapshot: int | None
    approval_id: str | None
    dry_run: bool
    #: audit mode and not allow: what enforcement would have stopped
    would_block: bool


class ApprovalRecord(TypedDict):
    """An approval request (``/v1/approvals``, ``envlabel approvals show --json``)."""

    id: str
    status: ApprovalStatus
    #: who asked (the principal whose next identical call an approval allows once)
    principal: str
    action: str
    target: str
    target_id: str
    #: sha256 of the call's parameters (canonical JSON); the approval allows only the same parameters
    parameters_digest: str
    environment: str
    created_at: str
    expires_at: str
    decided_by: str | None
    decided_at: str | None
    decision_reason: str | None
    spent_at: str | None
    #: the check it was asked from: reasons, evidence (label), reversibility, lookalikes, approvers
    check: CheckRecord
    url: str | None
