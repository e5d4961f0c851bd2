"""The exceptions envlabel raises, each telling the caller what to do next.

    EnvlabelError                 base; ``str(e)`` is a sentence for a person
    ├── ConfigError               a config file or environment variable is wrong;
    │                             ``problems`` lists (field path, message)
    ├── TargetError               a target id is not one of the accepted forms
    ├── StoreError                the store cannot be opened or migrated
    ├── UnreachableError          the envlabel service did not answer
    └── Blocked                   a guard stopped a call; ``check`` is the check JSON
        ├── ActionDenied          the policy denies this action on this target
        └── ApprovalRequired      the action needs approval by ``approvers``
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
    @property
    def approvers(self) -> list[str]:
        return list(self.check.get("approvers", []))
