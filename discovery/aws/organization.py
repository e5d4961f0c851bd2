"""The AWS Organizations tree: root, nested OUs and accounts, with their tags.

Walked top-down, one parent at a time (ListOrganizationalUnitsForParent and
ListAccountsForParent), so an account's place is known from the walk itself,
never from one ListParents call per account. A node whose tags cannot be read
is not emitted (an account emitted tagless would lose its label); the store
keeps its previous record because the scan is then incomplete. Its children
are still walked: their own records are whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envlabel.config import AwsSource
from envlabel.discovery.aws.calls import Api, ScopeFailed
from envlabel.discovery.aws.records import PROVIDER, tag_dict
from envlabel.model import Resource

SCOPE = "organization"

PERMISSIONS = (
    "organizations:ListRoots",
    "organizations:ListOrganizationalUnitsForParent",
    "organizations:ListAccountsForParent",
    "organizations:ListTagsForResource",
)


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    status: str


@dataclass
class OrgTree:
    """What the walk saw. ``accounts`` holds every account found, even one whose record was skipped."""

    resources: list[Resource] = field(default_factory=list)
    accounts: list[Account] = field(default_factory=list)
    failures: list[ScopeFailed] = field(default_factory=list)


def walk_organization(api: Api, source: AwsSource) -> OrgTree:
    """Walk the organization from its root(s). Raises ScopeFailed only if the roots cannot be listed."""
    tree = OrgTree()
    stack: list[tuple[str, str, str]] = []  # (parent id, parent ARN, parent path)
    for root in api.items("ListRoots", "Roots"):
        path = f"/{root.get('Name') or 'Root'}"
        tags = _tags(api, root["Id"], path, tree)
        if tags is not None:
            tree.resources.append(transform_root(root, tags))
        stack.append((root["Id"], root["Arn"], path))
    while stack:
        parent_id, parent_arn, parent_path = stack.pop()
        for ou in _children(api, "ListOrganizationalUnitsForParent", "OrganizationalUnits", parent_id=parent_id,
                            where=parent_path, tree=tree):
            path = f"{parent_path}/{ou['Name']}"
            tags = _tags(api, ou["Id"], path, tree)
            if tags is not None:
                tree.resources.append(transform_ou(ou, parent_arn, path, tags, source.ou_environments))
            stack.append((ou["Id"], ou["Arn"], path))
        for account in _children(api, "ListAccountsForParent", "Accounts", parent_id=parent_id, where=parent_path,
                                 tree=tree):
            tree.accounts.append(Account(account["Id"], account.get("Name", ""), account.get("Status", "ACTIVE")))
            tags = _tags(api, account["Id"], f"account {account['Id']}", tree)
            if tags is not None:
                tree.resources.append(transform_account(account, parent_arn, tags, source.account_environments))
    return tree


def _children(api: Api, operation: str, key: str, *, parent_id: str, where: str, tree: OrgTree) -> list[Any]:
    """One parent's OUs or accounts, or none (with the failure recorded) when they could not be listed."""
    try:
        return list(api.items(operation, key, ParentId=parent_id))
    except ScopeFailed as failure:
        tree.failures.append(_at(failure, where))
        return []


def _tags(api: Api, resource_id: str, where: str, tree: OrgTree) -> dict[str, str] | None:
    """The node's tags, or None (with the failure recorded) when they could not be read."""
    try:
        return tag_dict(list(api.items("ListTagsForResource", "Tags", ResourceId=resource_id)))
    except ScopeFailed as failure:
        tree.failures.append(_at(failure, where))
        return None


def _at(failure: ScopeFailed, where: str) -> ScopeFailed:
    return ScopeFailed(f"{where}: {failure.message}; its previous record is kept", failure.hint)


def transform_root(root: Mapping[str, Any], tags: dict[str, str]) -> Resource:
    return Resource(root["Arn"], PROVIDER, "aws:root", "Root", None, tags, SCOPE,
                    path=f"/{root.get('Name') or 'Root'}")


def transform_ou(ou: Mapping[str, Any], parent: str, path: str, tags: dict[str, str],
                 ou_environments: Mapping[str, str]) -> Resource:
    """An OU: its name declares an environment the way a tag value would (``Production``)."""
    return Resource(ou["Arn"], PROVIDER, "aws:ou", ou["Name"], parent, tags, SCOPE, name_signal=True,
                    declared=ou_environments.get(path), path=path)


def transform_account(account: Mapping[str, Any], parent: str, tags: dict[str, str],
                      account_environments: Mapping[str, str]) -> Resource:
    return Resource(account["Id"], PROVIDER, "aws:account", account.get("Name") or account["Id"], parent, tags,
                    SCOPE, declared=account_environments.get(account["Id"]), aliases=(account["Arn"],))
