"""Grants: the ceiling a principal's trust puts on the environment policy. Pure.

``config.grants`` maps a principal (or ``group:NAME``) to the classes it may do at most in each environment::

    grants:
      ci-deployer: {sandbox: [read, create, modify, delete], staging: [read, create, modify], production: [read]}
      group:agents: {sandbox: [read, create, modify, delete]}

The decision is the stricter of the policy and the grant: a class the grant gives is decided by the policy as
before; a class it does not give is ``deny`` (no approval can lift a grant: ask for a wider grant instead).
Read is always given. A principal with no grant of its own nor of any of its groups is decided by the policy
alone (no grants configured: today's behaviour); an empty grant (``ci-bot: {}``) is read-only everywhere.
A principal's own grant wins over its groups'; several groups' grants add up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from envlabel.config import Config
from envlabel.records import ActionClass, CheckRecord

GROUP_PREFIX = "group:"


@dataclass(frozen=True, slots=True)
class GrantFound:
    """The grant that applies to a principal: the config key(s) it came from and what it gives per environment."""

    keys: tuple[str, ...]
    classes: Mapping[str, frozenset[ActionClass]]

    def gives(self, environment: str, action_class: ActionClass) -> bool:
        return action_class == "read" or action_class in self.classes.get(environment, frozenset())

    @property
    def name(self) -> str:
        return "+".join(self.keys)


def grant_for(config: Config, principal: str, groups: Sequence[str] = ()) -> GrantFound | None:
    """The grant of ``principal`` (its own, else the union of its groups'), or None when none applies."""
    grants = config.grants
    if not grants:
        return None
    own = grants.get(principal)
    if own is not None:
        return GrantFound((principal,), {env: frozenset(classes) for env, classes in own.items()})
    known = config.principals.get(principal)
    every_group = dict.fromkeys([*groups, *(known.groups if known else ())])
    keys = tuple(f"{GROUP_PREFIX}{g}" for g in every_group if f"{GROUP_PREFIX}{g}" in grants)
    if not keys:
        return None
    merged: dict[str, set[ActionClass]] = {}
    for key in keys:
        for env, classes in grants[key].items():
            merged.setdefault(env, set()).update(classes)
    return GrantFound(keys, {env: frozenset(classes) for env, classes in merged.items()})


def apply_grant(config: Config, check: CheckRecord, principal: str, groups: Sequence[str] = ()) -> CheckRecord:
    """``check`` under ``principal``'s grant: unchanged when the grant gives the class (or none applies),
    else a ``deny`` decided by ``grants.KEY.ENVIRONMENT``, its reason saying what the grant gives there."""
    found = grant_for(config, principal, groups)
    environment, action_class = check["environment"], check["action_class"]
    if found is None or found.gives(environment, action_class) or check["decision"] == "deny":
        return check
    given = [c for c in _CLASS_ORDER if c == "read" or c in found.classes.get(environment, frozenset())]
    reason = (f"grant {found.name}: {principal} may do {', '.join(given)} in {environment}, not {action_class}; "
              f"denied (ask for a wider grant in config grants, not for an approval)")
    return {**check, "decision": "deny", "approvers": [], "rule": f"grants.{found.name}.{environment}",
            "reasons": [*(r for r in check["reasons"] if not r.startswith(_ASKING)), reason]}


_CLASS_ORDER: list[ActionClass] = ["read", "create", "modify", "delete"]
#: the policy's closing reasons for require_approval (who to ask), which a grant's deny replaces
_ASKING = ("ask ", "no approvers are configured")
