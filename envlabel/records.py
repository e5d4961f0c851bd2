"""The records envlabel answers with: the label JSON and the check JSON (docs/contracts.md), as types.

They travel from the query layer to every face (CLI ``--json``, HTTP, MCP) and back to the SDK, so
a field added here is added everywhere at once; none is ever removed or renamed.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

#: what the check answers (its ``decision``), per environment and action class in the policy
Decision = Literal["allow", "require_approval", "deny"]
#: the four classes every action falls into
ActionClass = Literal["read", "create", "modify", "delete"]


class EvidenceRecord(TypedDict):
    """One signal behind a label: ``{signal, environment, source, detail}``."""

    signal: str
    environment: str
    source: str
    detail: str


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
