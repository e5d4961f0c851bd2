"""The check with a principal: who acts, what their grant allows, the approval they hold, and the record of it.

:func:`envlabel.service.core.check.check` answers "may this be done to this target?" from the label and the
environment policy. Every face asks through :class:`Authority` instead, which adds, in order:

1. the **grant** of the principal (and of its claim, which can only narrow): the stricter of policy and grant
   (:mod:`envlabel.labelers.grants`);
2. **approvals**: a ``require_approval`` answer spends an approved request bound to exactly this principal,
   action, target and parameters (``allow``, once), or carries the pending request it created or reused
   (:mod:`envlabel.service.core.approvals`);
3. **lookalikes**: same-named resources in other environments, lifted from the label to the answer;
4. the **mode**: ``audit`` (config ``mode`` or the caller's ENVLABEL_MODE) reports and logs, never enforces;
5. the **decision log**: every answer is recorded, batched, without waiting
   (:mod:`envlabel.service.core.decision_log`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from envlabel.labelers.grants import apply_grant
from envlabel.records import CheckRecord, Interface, Mode
from envlabel.service.core import approvals
from envlabel.service.core.check import check as check_target
from envlabel.service.core.check import check_seen as check_seen_target
from envlabel.service.core.clock import utcnow
from envlabel.service.core.decision_log import DecisionLog
from envlabel.service.core.query import Query

#: the principal of a caller that said nothing about itself (no token, no ENVLABEL_PRINCIPAL)
ANONYMOUS = "anonymous"
#: what a face passes to announce an event (``approval_requested``, ``approval_decided``) to the webhooks
Notify = Callable[[str, Mapping[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks, as the face established it.

    ``principal`` is authoritative: a token's principal, a Kubernetes ``userInfo.username``, or, where nothing
    authenticates (the CLI, a server without tokens), what the caller claims. ``claimed`` is a claim that differs
    from it (ENVLABEL_PRINCIPAL sent with a token of another principal): recorded, and its grant applied too, so a
    claim can narrow what a token may do but never widen it."""

    principal: str = ANONYMOUS
    groups: tuple[str, ...] = ()
    claimed: str | None = None
    interface: Interface = "cli"
    #: the caller's own ENVLABEL_MODE; audit when it or the config says audit
    mode: Mode | None = None
    #: a Kubernetes dry run: decided and logged, never an action (an approval is not spent on it)
    dry_run: bool = False

    def claiming(self, claim: str | None) -> Caller:
        """This caller with a claim: without authentication the claim is the principal; with it, a narrowing."""
        claim = (claim or "").strip() or None
        if claim is None or claim == self.principal:
            return self
        if self.principal == ANONYMOUS:
            return replace(self, principal=claim)
        return replace(self, claimed=claim)


class Authority:
    """The query layer's check, for principals. Cheap to share between threads."""

    def __init__(self, query: Query, log: DecisionLog | None = None, notify: Notify | None = None) -> None:
        self.query = query
        self.log = log
        self.notify = notify

    @property
    def config(self) -> Any:
        return self.query.config

    def check(self, caller: Caller, target: str, action: str, *, contents: bool = False,
              parameters: Mapping[str, Any] | None = None) -> CheckRecord:
        """The check JSON for ``caller`` (raises TargetError if the target is malformed). May look a never-seen
        target up and write an approval request: call it off the event loop."""
        return self.finish(caller, check_target(self.query, target, action, contents=contents,
                                                parameters=parameters), parameters)

    def check_seen(self, caller: Caller, target: str, action: str,
                   parameters: Mapping[str, Any] | None = None) -> CheckRecord | None:
        """The check from one indexed read, or None when it needs more: a never-seen target (a lookup), or a
        ``require_approval`` under the grant (an approval to spend or to write). ``parameters`` decide the
        recovery (with the facts the same read brings) and bind an approval."""
        base = check_seen_target(self.query, target, action, parameters)
        if base is None:
            return None
        granted = self.granted(caller, base)
        if granted["decision"] == "require_approval":
            return None
        return self.finish(caller, base, parameters, granted=granted)

    def granted(self, caller: Caller, base: CheckRecord) -> CheckRecord:
        """``base`` under the caller's grant, and its claim's."""
        config = self.config
        answer = apply_grant(config, base, caller.principal, caller.groups)
        if caller.claimed is not None:
            answer = apply_grant(config, answer, caller.claimed, ())
        return answer

    def finish(self, caller: Caller, base: CheckRecord, parameters: Mapping[str, Any] | None = None, *,
               granted: CheckRecord | None = None, now: datetime | None = None) -> CheckRecord:
        """Grants, approvals, lookalikes, mode and the log applied to a check the query layer answered."""
        now = now or utcnow()
        answer = granted if granted is not None else self.granted(caller, base)
        answer["principal"] = caller.principal
        if caller.claimed is not None:
            answer["claimed_principal"] = caller.claimed
        mode: Mode = "audit" if "audit" in (self.config.mode, caller.mode) else "enforce"
        answer["mode"] = mode
        lookalikes = answer["label"].get("lookalikes")
        if lookalikes is not None:
            answer["lookalikes"] = lookalikes
        if answer["decision"] == "require_approval":
            answer = approvals.settle(self, caller, answer, approvals.parameters_digest(parameters), now)
        if self.log is not None:
            self.log.record(answer, caller, now)
        return answer
