"""Approval requests: a ``require_approval`` answer becomes a request a person can approve, once.

A request is bound to a **key**: the caller's principal, the action (its canonical name, ``rds:DeleteDBInstance``,
so ``DeleteDBInstance`` and boto3's ``delete_db_instance`` share one), the target's canonical id and the digest
of the call's parameters. :func:`settle` (called by :meth:`Authority.finish` for every ``require_approval``
answer in enforce mode, not in a dry run) either **spends** an approved request for that key (the answer becomes
``allow`` with ``rule: approval:ID``; the conditional UPDATE lets exactly one caller spend it) or carries the
**pending** request for that key, reused or created. Its creation is announced once through ``notify``
(``approval_requested``), with :func:`approval_message` as the webhook body.

Deciding: only a pending, unexpired request is approved or denied; never by its requester (:class:`SelfApproval`,
403); a deny needs a reason (the requester must learn what to change), an approval may go without one. An
approval never lifts a deny: a deny (policy or grant) never reaches :func:`settle`, and :func:`request_approval`
refuses it.

One-time links: each request gets a random key; only its sha256 is stored (``link_sha256``) and the key itself
goes only into the ``approval_requested`` notification (the page link ``BASE/approvals/ID?key=K``), never into
an API answer. :func:`check_link` checks a key in constant time; deciding the request clears it, so a link
decides its request once.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, get_args

from envlabel.records import ApprovalRecord, ApprovalRef, ApprovalStatus, CheckRecord
from envlabel.service.core.clock import utcnow
from envlabel.service.core.errors import ApprovalRefused, InvalidRequest, NoApproval, SelfApproval
from envlabel.service.core.text import BadText, plain_text
from envlabel.store.codec import ts
from envlabel.store.records import ApprovalRow
from envlabel.targets import parse_target

if TYPE_CHECKING:
    from envlabel.service.core.authority import Authority, Caller
    from envlabel.service.core.query import Query

log = logging.getLogger("envlabel.approvals")

APPROVAL_REQUESTED = "approval_requested"
APPROVAL_DECIDED = "approval_decided"
STATUSES: tuple[str, ...] = get_args(ApprovalStatus)
#: at most this many requests in one list answer
LIST_LIMIT = 500
#: the longest approver name and decision reason kept (as for overrides)
MAX_APPROVER, MAX_REASON = 200, 1000
#: Slack Block Kit limits: header text, section text, blocks per message
HEADER_MAX, SECTION_MAX, BLOCKS_MAX = 150, 3000, 50
#: a value from the estate (a name, a tag, a principal) shown in a notification at most this long
VALUE_MAX = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_canonical = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str).encode


def parameters_digest(parameters: Mapping[str, Any] | None) -> str:
    """sha256 hex of the parameters as canonical JSON (sorted keys, no spaces; ``{}`` when none): an approval
    allows the call with exactly these parameters.

    >>> parameters_digest(None) == parameters_digest({})
    True
    """
    return hashlib.sha256(_canonical(dict(parameters or {})).encode()).hexdigest()


# -- the check's side ---------------------------------------------------------------------------------------
def settle(authority: Authority, caller: Caller, answer: CheckRecord, digest: str, now: datetime) -> CheckRecord:
    """A ``require_approval`` answer, settled: ``allow`` by spending a matching approved request, else the answer
    with the pending request for its key. Audit mode and dry runs are returned unchanged: nothing is blocked or
    performed there, so nothing is requested or spent."""
    if answer.get("mode") == "audit" or caller.dry_run:
        return answer
    store = authority.query.store
    base_url = _base_url(authority.query)
    found = store.find_approval(*_key(caller, answer, digest), now)
    for _ in range(3):  # another caller spending the one found may leave a second one approved
        if found is None or found.status != "approved":
            break
        if store.spend_approval(found.id, now):
            return _allowed(answer, replace(found, status="spent", spent_at=now), base_url)
        found = store.find_approval(*_key(caller, answer, digest), now)
    row = found if found is not None else _open(authority, caller, answer, digest, now)[0]
    if row.status == "approved" and store.spend_approval(row.id, now):  # approved since it was looked up
        return _allowed(answer, replace(row, status="spent", spent_at=now), base_url)
    return _pending(answer, record_of(row, base_url, now))


def _key(caller: Caller, answer: CheckRecord, digest: str) -> tuple[str, str, str, str]:
    """(principal, action, target id, digest). Agents sharing one token are told apart by their claims: a claimed
    principal is folded into the digest, so one agent's approval is never another's (a claim cannot widen)."""
    if caller.claimed is not None:
        digest = hashlib.sha256(f"{digest}\nclaimed:{caller.claimed}".encode()).hexdigest()
    return caller.principal, _action_of(answer), _target_id_of(answer), digest


def _action_of(answer: CheckRecord) -> str:
    return answer.get("understood_as") or answer["action"]


def _target_id_of(answer: CheckRecord) -> str:
    """The stored canonical id (an alias resolves to its resource), else the id the target parses to."""
    return answer["label"].get("id") or parse_target(answer["target"]).id


def _open(authority: Authority, caller: Caller, answer: CheckRecord, digest: str, now: datetime, *,
          note: str = "") -> tuple[ApprovalRow, bool]:
    """The live request for the answer's key, or a new one (announced with its one-time link); True if new."""
    config = authority.config
    link_key = secrets.token_urlsafe(24)
    snapshot: dict[str, Any] = copy.deepcopy(dict(answer))
    snapshot.pop("approval", None)
    if note:
        snapshot["reasons"] = [*snapshot.get("reasons", []), f"the requester says: {note}"]
    principal, action, target_id, digest = _key(caller, answer, digest)
    row = ApprovalRow(
        id=new_approval_id(), status="pending", principal=principal, action=action, target=answer["target"],
        target_id=target_id, digest=digest, environment=answer["environment"], created_at=now,
        expires_at=now + config.approvals.expire_after, decided_by=None, decided_at=None, decision_reason=None,
        spent_at=None, link_sha256=_sha256(link_key), snapshot=snapshot)
    stored, created = authority.query.store.live_or_create_approval(row, now)
    if created:
        _announce(authority, APPROVAL_REQUESTED, record_of(stored, config.approvals.base_url, now), link_key)
    return stored, created


def new_approval_id() -> str:
    """``apr-`` and 12 lowercase hex digits (48 random bits)."""
    return f"apr-{secrets.token_hex(6)}"


def _allowed(answer: CheckRecord, spent: ApprovalRow, base_url: str | None) -> CheckRecord:
    why = f": {spent.decision_reason}" if spent.decision_reason else ""
    allowed: CheckRecord = {**answer, "decision": "allow", "rule": f"approval:{spent.id}", "approvers": [],
                            "reasons": [f"approved by {spent.decided_by}{why} (approval {spent.id}, used once)",
                                        *answer["reasons"]]}
    allowed["approval"] = {"id": spent.id, "status": "spent", "expires_at": ts(spent.expires_at),
                           "url": approval_url(base_url, spent.id)}
    return allowed


def _pending(answer: CheckRecord, record: ApprovalRecord) -> CheckRecord:
    approval_id = record["id"]
    ref: ApprovalRef = {"id": approval_id, "status": record["status"], "expires_at": record["expires_at"],
                        "url": record["url"]}
    if record["status"] == "approved":  # approved, and spent by another call in the meantime: retry makes a new one
        said = f"approval request {approval_id} was approved but used by another call; retry the same call"
    else:
        who = ", ".join(answer["approvers"]) or "a person who may approve it"
        said = (f"approval request {approval_id} is pending: ask {who} to approve it "
                f"(envlabel approvals approve {approval_id} --by NAME), then retry the same call")
    pending: CheckRecord = {**answer, "reasons": [*answer["reasons"], said]}
    pending["approval"] = ref
    return pending


# -- the explicit request, reading and deciding ---------------------------------------------------------------
def request_approval(authority: Authority, caller: Caller, target: str, action: str, *,
                     parameters: Mapping[str, Any] | None = None, reason: str = "") -> ApprovalRecord:
    """Create (or reuse) the request for this call before making it (``POST /v1/approvals``). The check runs as a
    dry run of an Authority without a log, so asking neither spends an approval nor records a decision; raises
    ApprovalRefused when there is nothing to approve (allow, audit mode) or nothing may be (deny)."""
    from envlabel.service.core.authority import Authority as Checking

    now = utcnow()
    answer = Checking(authority.query).check(replace(caller, dry_run=True), target, action, parameters=parameters)
    subject = f"{action} on {target}"
    if answer.get("mode") == "audit":
        raise ApprovalRefused(f"{subject}: audit mode (config mode or ENVLABEL_MODE=audit) blocks nothing, so there "
                              "is nothing to approve; make the call")
    if answer["decision"] == "allow":
        raise ApprovalRefused(f"{subject} is allowed ({answer['rule']}): allow needs no approval; make the call")
    if answer["decision"] == "deny":
        raise ApprovalRefused(f"{subject} is denied ({answer['rule']}): deny cannot be approved; "
                              + "; ".join(answer["reasons"]))
    row, _created = _open(authority, caller, answer, parameters_digest(parameters), now, note=reason.strip())
    return record_of(row, _base_url(authority.query), now)


def get_approval(query: Query, approval_id: str, now: datetime | None = None) -> ApprovalRecord:
    row = query.store.approval(approval_id)
    if row is None:
        raise NoApproval(f"no approval request {approval_id!r}; list them with `envlabel approvals list` "
                         "(GET /v1/approvals)")
    return record_of(row, _base_url(query), now or utcnow())


def list_approvals(query: Query, status: str | None = None, principal: str | None = None, *,
                   limit: int = 100, now: datetime | None = None) -> dict[str, list[ApprovalRecord]]:
    """``{"approvals": [...]}``, newest first; ``status`` as shown (a pending request past its expiry is expired)."""
    if status is not None and status not in STATUSES:
        raise InvalidRequest("status", f"{status!r} is not a status; use one of {', '.join(STATUSES)}")
    if not 1 <= limit <= LIST_LIMIT:
        raise InvalidRequest("limit", f"must be between 1 and {LIST_LIMIT}")
    now = now or utcnow()
    rows = query.store.list_approvals(status, principal, limit, now=now)
    base_url = _base_url(query)
    return {"approvals": [record_of(row, base_url, now) for row in rows]}


def approve(authority: Authority, approval_id: str, by: str, reason: str = "",
            now: datetime | None = None) -> ApprovalRecord:
    """Approve a pending request: the requester's next identical call is allowed once. A reason is optional."""
    return _decide(authority, approval_id, "approved", by, reason, now=now)


def deny(authority: Authority, approval_id: str, by: str, reason: str, now: datetime | None = None) -> ApprovalRecord:
    """Deny a pending request. A reason is required: the requester (often an agent) must learn what to change."""
    if not reason.strip():
        raise InvalidRequest("reason", "a deny needs a reason: say why, so the requester knows what to do instead "
                             "(--reason TEXT)")
    return _decide(authority, approval_id, "denied", by, reason, now=now)


def _decide(authority: Authority, approval_id: str, status: str, by: str, reason: str, *,
            now: datetime | None) -> ApprovalRecord:
    now = now or utcnow()
    if not by.strip():
        raise InvalidRequest("by", "say who decides (--by NAME): the decision log and the requester are told")
    try:
        by = plain_text(by, "approver (--by)", MAX_APPROVER)
        reason = plain_text(reason, "reason (--reason)", MAX_REASON, lines=True) if reason.strip() else ""
    except BadText as exc:
        raise InvalidRequest("by" if "approver" in str(exc) else "reason", str(exc)) from None
    query = authority.query
    current = get_approval(query, approval_id, now)
    if by == current["principal"]:
        raise SelfApproval(f"the requester cannot approve its own request: {approval_id} was asked by {by}; "
                           "another person must decide it")
    verb = "approve" if status == "approved" else "deny"
    if current["status"] != "pending" or not query.store.decide_approval(approval_id, status, by, reason.strip(), now):
        raise _not_pending(get_approval(query, approval_id, now), verb)
    decided = get_approval(query, approval_id, now)
    _announce(authority, APPROVAL_DECIDED, decided, None)
    return decided


def _not_pending(record: ApprovalRecord, verb: str) -> ApprovalRefused:
    state = record["status"]
    if state == "expired":
        when = f"expired at {record['expires_at']}"
    elif record["decided_by"]:
        when = f"{state} by {record['decided_by']} at {record['decided_at']}"
        if record["spent_at"]:
            when += f", used at {record['spent_at']}"
    else:
        when = state
    return ApprovalRefused(f"cannot {verb} approval request {record['id']}: it is {when}; only a pending request "
                           "can be decided (retrying the call asks for a new one)")


def expire(query: Query, now: datetime | None = None) -> int:
    """Mark requests past their expiry ``expired`` (reads already show them so); returns how many."""
    return query.store.expire_approvals(now or utcnow())


def check_link(query: Query, approval_id: str, key: str) -> bool:
    """True when ``key`` is the one-time key of ``approval_id``'s notification link and no decision used it yet.
    Constant-time in the key; an unknown id or a used link compares against a dummy digest."""
    row = query.store.approval(approval_id)
    stored = row.link_sha256 if row is not None and row.link_sha256 else None
    matches = hmac.compare_digest(_sha256(key or ""), stored or _sha256(secrets.token_hex(16)))
    return matches and stored is not None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- records and links ---------------------------------------------------------------------------------------
def record_of(row: ApprovalRow, base_url: str | None, now: datetime) -> ApprovalRecord:
    """The API's view of a stored request: a pending or approved one past its expiry shows as expired."""
    status = row.status
    if status in ("pending", "approved") and row.expires_at <= now:
        status = "expired"
    snapshot: CheckRecord = row.snapshot  # type: ignore[assignment]  # stored from a CheckRecord
    return {
        "id": row.id, "status": status,  # type: ignore[typeddict-item]  # a stored status is an ApprovalStatus
        "principal": row.principal, "action": row.action, "target": row.target, "target_id": row.target_id,
        "parameters_digest": row.digest, "environment": row.environment, "created_at": ts(row.created_at),
        "expires_at": ts(row.expires_at), "decided_by": row.decided_by,
        "decided_at": ts(row.decided_at) if row.decided_at else None, "decision_reason": row.decision_reason,
        "spent_at": ts(row.spent_at) if row.spent_at else None, "check": snapshot,
        "url": approval_url(base_url, row.id),
    }


def _base_url(query: Query) -> str | None:
    base: str | None = query.config.approvals.base_url
    return base


def approval_url(base_url: str | None, approval_id: str) -> str | None:
    """The approval page of a request (no key), when the server knows its address (config approvals.base_url)."""
    return f"{base_url.rstrip('/')}/approvals/{approval_id}" if base_url else None


def approval_link(base_url: str | None, approval_id: str, key: str) -> str | None:
    """The one-time link of a notification: the page of the request with its key."""
    url = approval_url(base_url, approval_id)
    return f"{url}?key={key}" if url else None


def _announce(authority: Authority, kind: str, record: ApprovalRecord, link_key: str | None) -> None:
    """Tell the webhooks; a notifier that fails is logged, never the check's failure."""
    if authority.notify is None:
        return
    try:
        authority.notify(kind, approval_message(record, authority.config.approvals.base_url, link_key))
    except Exception:
        log.exception("could not announce %s for approval request %s", kind, record["id"])


# -- the notification -----------------------------------------------------------------------------------------
def approval_message(approval: ApprovalRecord, base_url: str | None, key: str | None = None) -> dict[str, Any]:
    """The webhook body of an approval event, rendering as is in Slack (``text`` as mrkdwn, and ``blocks``) and in a
    Teams incoming webhook (``text`` as markdown), with the request itself under ``envlabel``.

    ``key``: the one-time link key (only in the ``approval_requested`` notification). Every value from the estate
    or the caller is escaped (``&<>``, no line breaks, backticks dropped inside code): a resource named
    ``<!channel>`` or a tag holding a fake "approved" line shows as text."""
    parts = _message_parts(approval, base_url, key)
    text = "\n\n".join(part for part in parts.values() if part)
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "emoji": False,
                                                                  "text": _clip(_headline(approval, plain=True),
                                                                                HEADER_MAX)}}]
    for name in ("facts", "status", "evidence", "lookalikes", "reasons", "decide"):
        if parts.get(name):
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip(parts[name], SECTION_MAX)}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(parts["context"], SECTION_MAX)}]})
    return {"text": text, "blocks": blocks[:BLOCKS_MAX],
            "envlabel": {"environment": approval["environment"], "approval": approval,
                         "link": approval_link(base_url, approval["id"], key) if key else None}}


def _message_parts(approval: ApprovalRecord, base_url: str | None, key: str | None) -> dict[str, str]:
    check = approval["check"]
    return {
        "headline": _headline(approval, plain=False),
        "facts": _facts(approval, check),
        "status": _status_line(approval),
        "evidence": _evidence_text(approval, check),
        "lookalikes": _lookalikes_text(check),
        "reasons": "*Why it needs approval*\n" + "\n".join(f"• {_esc(r)}" for r in check.get("reasons", [])[:10]),
        "decide": _decide_text(approval, base_url, key) if approval["status"] == "pending" else "",
        "context": (f"envlabel approval `{_code(approval['id'])}` · parameters sha256 "
                    f"`{approval['parameters_digest'][:16]}` · expires {approval['expires_at']}"),
    }


def _headline(approval: ApprovalRecord, *, plain: bool) -> str:
    environment = _clean(approval["environment"]).upper()
    name = _clean(_name_of(approval))
    who, action = _clean(approval["principal"]), _clean(approval["action"])
    if plain:
        return f"{environment} — {who} asks to {action} {name}"
    return f"*{_esc(environment)}* — {_esc(who)} asks to {_esc(action)} {_esc(name)}"


def _name_of(approval: ApprovalRecord) -> str:
    name = approval["check"].get("label", {}).get("name")
    if name:
        return str(name)
    target = approval["target_id"]
    return re.split(r"[/:]", target.rstrip("/"))[-1] or target


def _facts(approval: ApprovalRecord, check: CheckRecord) -> str:
    claimed = check.get("claimed_principal")
    who = f"`{_code(approval['principal'])}`" + (f" (claiming `{_code(claimed)}`)" if claimed else "")
    return "\n".join([
        f"*Environment:* *{_esc(_clean(approval['environment']).upper())}*",
        f"*Target:* `{_code(approval['target_id'])}`",
        f"*Principal:* {who}",
        f"*Action:* `{_code(approval['action'])}` ({_esc(str(check.get('action_class', 'unknown')))})",
        *_recovery_lines(check),
    ])


def _recovery_lines(check: CheckRecord) -> list[str]:
    """Whether the action can be undone on this target, and how, or what makes it final: the approver's first
    question, answered from the target's scanned facts (``recovery``), else from the action's class."""
    recovery = check.get("recovery")
    if recovery is None:
        reversible = check.get("reversible")
        undo = ("yes" if reversible else "*no* — it cannot be undone") if reversible is not None else "unknown"
        return [f"*Reversible:* {undo}"]
    why = "; ".join(_esc(w) for w in recovery["why"][:6])
    verdict = recovery["reversible"]
    if verdict is True:
        lines = ["*Reversible:* yes" + (f" — {_esc(recovery['how'])}" if recovery["how"] else "")]
    elif verdict is False:
        lines = ["*Reversible:* *no* — it cannot be undone" + (f": {why}" if why else "")]
    else:
        lines = ["*Reversible:* *unknown* — treated as irreversible" + (f": {why}" if why else "")]
    if verdict is True and why:
        lines.append(f"*Why:* {why}")
    if recovery["loses"]:
        lines.append(f"*Would lose:* {_esc(recovery['loses'])}")
    if recovery["destroys_data"]:
        lines.append("*Destroys data:* this change is decided as a delete")
    return lines


def _status_line(approval: ApprovalRecord) -> str:
    status = approval["status"]
    if status == "pending":
        return ""
    why = f": {_esc(approval['decision_reason'] or '')}" if approval["decision_reason"] else ""
    if status in ("approved", "denied", "spent") and approval["decided_by"]:
        return f"*{status.capitalize()}* by `{_code(approval['decided_by'])}`{why}"
    return f"*{status.capitalize()}*"


def _evidence_text(approval: ApprovalRecord, check: CheckRecord) -> str:
    label = check.get("label", {})
    title = f"*Why it is {_esc(_clean(approval['environment']).upper())}*"
    evidence = label.get("evidence") or []
    if not evidence:
        return f"{title}\n• no evidence: envlabel has not labeled this target, so it is treated as production"
    lines = [f"• {_esc(e.get('signal', ''))}: {_esc(e.get('detail', ''))} → {_esc(e.get('environment', ''))}"
             f" (`{_code(e.get('source', ''))}`)" for e in evidence[:15]]
    if len(evidence) > 15:
        lines.append(f"• … and {len(evidence) - 15} more")
    return "\n".join([title, *lines])


def _lookalikes_text(check: CheckRecord) -> str:
    lookalikes = check.get("lookalikes") or check.get("label", {}).get("lookalikes") or []
    if not lookalikes:
        return ""
    lines = [f"• :warning: {_esc(item['name'])} also exists in *{_esc(_clean(item['environment']).upper())}*: "
             f"`{_code(item['target'])}`" for item in lookalikes[:10]]
    return "\n".join(["*Lookalikes: make sure this is the one you mean*", *lines])


def _decide_text(approval: ApprovalRecord, base_url: str | None, key: str | None) -> str:
    approval_id = _code(approval["id"])
    lines = ["*To decide*",
             f"Approve: `envlabel approvals approve {approval_id} --by YOUR-NAME --reason \"...\"`",
             f"Deny: `envlabel approvals deny {approval_id} --by YOUR-NAME --reason \"...\"`"]
    link = approval_link(base_url, approval["id"], key) if key else approval_url(base_url, approval["id"])
    if link:
        lines.append(f"Or open the approval page: {link}")
    lines.append(f"The requester cannot approve its own request. Unanswered, it expires at {approval['expires_at']}.")
    return "\n".join(lines)


def _clean(value: Any) -> str:
    """A value from the estate on one line, at most VALUE_MAX characters."""
    return _clip(_CONTROL.sub(" ", str(value)), VALUE_MAX)


def _esc(value: Any) -> str:
    """Slack's three escapes (so ``<!channel>`` or ``<http://x|approve>`` shows as text), on one line."""
    return _clean(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(value: Any) -> str:
    """A value inside a code span: escaped, without backticks (which would close it)."""
    return _esc(value).replace("`", "'")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"

