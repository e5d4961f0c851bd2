"""The organization walk pages through more OUs and accounts than one page holds (moto pages at 20)."""

from __future__ import annotations

import boto3

from envlabel.config import AwsSource
from envlabel.discovery.aws.calls import Api
from envlabel.discovery.aws.organization import walk_organization


def test_walk_follows_every_page(moto: str) -> None:
    org = boto3.client("organizations", region_name="us-east-1", endpoint_url=moto)
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    for i in range(23):
        org.create_organizational_unit(ParentId=root, Name=f"team-{i}")
    for i in range(24):
        org.create_account(Email=f"a{i}@example.com", AccountName=f"acct-{i}")

    calls: list[str] = []
    org.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
    tree = walk_organization(Api(org, "the test credentials"), AwsSource(name="aws", type="aws"))

    assert tree.failures == []
    assert len([r for r in tree.resources if r.kind == "aws:ou"]) == 23
    assert len(tree.accounts) == 24 + 1  # and the management account
    assert len([r for r in tree.resources if r.kind == "aws:account"]) == 25
    assert calls.count("ListAccountsForParent") == 2 + 23  # the root's two pages, one per (empty) OU
    assert calls.count("ListOrganizationalUnitsForParent") == 2 + 23
