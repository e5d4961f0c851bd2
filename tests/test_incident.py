"""The incident, replayed: an agent told to delete the staging ``orders-db`` acts with production credentials.

Production, staging and sandbox each hold an RDS instance called ``orders-db``
with the same engine, size and tags: nothing on the databases themselves tells
them apart. Only the Organization does: each account sits in the Production,
Staging or Sandbox OU. The real AwsScanner scans the moto Organization (through
assumed roles, as in production) into a real SQLite store, the real API serves
it on loopback, and a scripted agent uses plain boto3 with the envlabel guard.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from envlabel.client import Client
from envlabel.config import config_from_dict
from envlabel.discovery.aws import make_sessions
from envlabel.errors import ActionDenied, ApprovalRequired
from envlabel.guard.boto3 import protect
from envlabel.service.core.pipeline import run_source
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from tests.aws_estate import MANAGEMENT, ROLE, EstateInfo, _Account, member

REGION = "us-east-1"
TWIN_TAGS = {"app": "orders", "team": "orders"}  # identical on every twin: the tags cannot tell them apart


@dataclass
class Twins:
    moto: str
    envlabel: str
    #: OU name (Production, Staging, Sandbox) -> the member account acting inside it
    accounts: dict[str, _Account] = field(default_factory=dict)

    def arn(self, ou: str) -> str:
        return f"arn:aws:rds:{REGION}:{self.accounts[ou].id}:db:orders-db"

    def agent(self, ou: str, envlabel: Client) -> Any:
        """An agent's RDS client holding ``ou``'s credentials, guarded by envlabel."""
        credentials = self.accounts[ou].session.get_credentials().get_frozen_credentials()
        session = boto3.Session(aws_access_key_id=credentials.access_key, aws_secret_access_key=credentials.secret_key,
                                aws_session_token=credentials.token, region_name=REGION)
        protect(session, envlabel)
        return session.client("rds", endpoint_url=self.moto)

    def databases(self, ou: str) -> set[str]:
        """What really exists in that account, asked of moto without any guard."""
        rds = self.accounts[ou].client("rds", REGION)
        return {d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]}


def build_twins(moto: str) -> dict[str, _Account]:
    """An Organization with Production, Staging and Sandbox OUs, one account in each, and ``orders-db`` in every one."""
    info = EstateInfo(moto, MANAGEMENT, "")
    sessions = make_sessions()
    management = _Account(moto, MANAGEMENT, sessions(None), info, "management")
    org = management.client("organizations")
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    accounts: dict[str, _Account] = {}
    for ou_name in ("Production", "Staging", "Sandbox"):
        ou = org.create_organizational_unit(ParentId=root, Name=ou_name)["OrganizationalUnit"]["Id"]
        name = f"orders-{ou_name.lower()}"
        status = org.create_account(Email=f"{name}@example.com", AccountName=name)["CreateAccountStatus"]
        info.accounts[name] = status["AccountId"]
        org.move_account(AccountId=status["AccountId"], SourceParentId=root, DestinationParentId=ou)
        account = member(management, info, name, sessions)  # created through an assumed role in that account
        account.client("rds", REGION).create_db_instance(
            DBInstanceIdentifier="orders-db", DBInstanceClass="db.t3.micro", Engine="postgres",
            MasterUsername="admin", MasterUserPassword="not-a-secret-1", AllocatedStorage=20,
            Tags=[{"Key": k, "Value": v} for k, v in TWIN_TAGS.items()])
        accounts[ou_name] = account
    return accounts


@pytest.fixture
def twins(moto: str, tmp_path: Path) -> Iterator[Twins]:
    accounts = build_twins(moto)
    config = config_from_dict({
        "store": f"sqlite:///{tmp_path / 'envlabel.db'}",
        "approvers": {"staging": ["orders-oncall"]},
        "sources": [{"name": "aws", "type": "aws", "endpoint_url": moto, "regions": [REGION],
                     "organization": True, "assume_role": ROLE}],
    })
    store = open_store(config.store)
    summary = run_source(config, store, config.sources[0])
    assert summary.complete, summary.errors
    with BackgroundServer(config, store) as server:
        yield Twins(moto, server.url, accounts)


def test_the_incident_is_stopped_and_only_the_sandbox_twin_is_deleted(twins: Twins) -> None:
    envlabel = Client(twins.envlabel)
    assert len({twins.arn(ou) for ou in twins.accounts}) == 3  # same name, three accounts

    # The agent means the staging database but holds production credentials.
    with pytest.raises(ActionDenied) as denied:
        twins.agent("Production", envlabel).delete_db_instance(DBInstanceIdentifier="orders-db",
                                                               SkipFinalSnapshot=True)
    check = denied.value.check
    assert (check["target"], check["action"], check["decision"]) == (
        twins.arn("Production"), "rds:DeleteDBInstance", "deny")
    assert (check["environment"], check["action_class"], check["reversible"]) == ("production", "delete", False)
    evidence = check["label"]["evidence"]
    assert any(e["signal"] == "inherited" and "/Root/Production" in e["detail"] for e in evidence), evidence
    assert "/Root/Production" in str(denied.value)  # what the agent reads says why
    assert "orders-db" in twins.databases("Production")

    # Staging credentials, but the production ARN copied from somewhere: the ARN is the target.
    with pytest.raises(ActionDenied) as by_arn:
        twins.agent("Staging", envlabel).delete_db_instance(DBInstanceIdentifier=twins.arn("Production"),
                                                            SkipFinalSnapshot=True)
    assert by_arn.value.check["target"] == twins.arn("Production")
    assert "orders-db" in twins.databases("Production")

    # The database it was asked to delete: staging, which needs a person's approval.
    with pytest.raises(ApprovalRequired) as approval:
        twins.agent("Staging", envlabel).delete_db_instance(DBInstanceIdentifier="orders-db", SkipFinalSnapshot=True)
    assert approval.value.check["target"] == twins.arn("Staging")
    assert approval.value.check["environment"] == "staging"
    assert approval.value.approvers == ["orders-oncall"]
    assert "orders-db" in twins.databases("Staging")

    # Sandbox: allowed, sent, and gone (the very call the guard stopped above is a real, working call).
    twins.agent("Sandbox", envlabel).delete_db_instance(DBInstanceIdentifier="orders-db", SkipFinalSnapshot=True)
    assert "orders-db" not in twins.databases("Sandbox")
    assert {"orders-db"} == twins.databases("Production") == twins.databases("Staging")


