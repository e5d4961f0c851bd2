"""The exceptions envlabel raises, each telling the caller what to do next.

    EnvlabelError                 base; ``str(e)`` is a sentence for a person
    ├── ConfigError               a config file or environment variable is wrong;
    │                             ``problems`` lists (field path, message)
    ├── TargetError               a target id is not one of the accepted forms
    ├── StoreError                the store cannot be opened or migrated
    ├── UnreachableError          the envlabel service did not answer
    └── Blocked                   a guard stopped a call; ``check`` is the check JSON
        ├── ActionDenied          the policy denies this action on this target
        └── ApprovalRequired      the action needs approval by ``approvers``;
                                  ``approval_id`` is the request to approve
"""

from __future__ import annotations

from typing import Any


class EnvlabelError(Exception):
    """Base of every envlabel error."""


class ConfigError(EnvlabelError):
    """``problems`` lists ``(field path, message)``; ``(file)`` is the file itself (it cannot be read as YAML)."""

    def __init__(self, problems: list[tuple[str, str]], path: str | None = None) -> None:
        self.problems = problems
        self.path = path
        if path and [field for field, _ in problems] == ["(file)"]:
            # the file itself is unusable: one line, since nothing inside it could be checked
            super().__init__(f"config file {path}: {problems[0][1]}")
            return
        where = f" in {path}" if path else ""
        lines = [f"  {field}: {message}" for field, message in problems]
        super().__init__(f"invalid configuration{where}:\n" + "\n".join(lines))


class TargetError(EnvlabelError, ValueError):
    """Raised for a malformed target; the message names the accepted forms."""


class StoreError(EnvlabelError):
    pass


class UnreachableError(EnvlabelError):
    pass


class Blocked(EnvlabelError):
    def __init__(self, check: dict[str, Any]) -> None:
        self.check = check
        reasons = "; ".join(str(r) for r in check.get("reasons", []))
        super().__init__(
            f"{check.get('decision')}: {check.get('action')} on {check.get('target')} "
            f"({check.get('environment')}): {reasons}"
        )


class ActionDenied(Blocked):
    pass


class ApprovalRequired(Blocked):
    def __init__(self, check: dict[str, Any], note: str = "") -> None:
        super().__init__(check)
        approval_id = self.approval_id
        if approval_id is not None and approval_id not in str(self):
            who = ", ".join(self.approvers) or "an approver"
            self.args = (f"{self}; approval request {approval_id}: ask {who} to approve it "
                         f"(envlabel approvals approve {approval_id} --by NAME), then retry the same call",)
        if note:
            self.args = (f"{self}; {note}",)

    @property
    def approvers(self) -> list[str]:
        return list(self.check.get("approvers", []))

    @property
    def approval_id(self) -> str | None:
        """The approval request the server created or reused for this call (None from a server without
        approvals, or in a dry run); approved, the same call is allowed once."""
        approval = self.check.get("approval")
        found = approval.get("id") if isinstance(approval, dict) else None
        return found if isinstance(found, str) and found else None
