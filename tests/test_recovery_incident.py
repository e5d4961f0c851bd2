"""The incident, with what the delete would cost: the production ``orders-db`` has no backups.

The twins of tests/test_incident.py (an ``orders-db`` in a Production, a Staging and a Sandbox account of a moto
Organization), every one with automated backups off and no snapshot. The real AwsScanner reads their recovery
facts into a real SQLite store, the real API serves the check on loopback, and plain boto3 with the envlabel guard
acts. The check says the production delete could not be undone and why; a snapshot and a rescan make it
recoverable, naming the snapshot; the staging twin's ``SkipFinalSnapshot`` delete is refused under
``policy.staging.irreversible: deny`` and the twin still exists; ``envlabel audit`` reports the production database
as ``unrecoverable`` with the command that fixes it, until deletion protection and backups are on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client as McpClient
from mcp.client.streamable_http import streamable_http_client

from envlabel.client import Client
from envlabel.config import Config, config_from_dict
from envlabel.errors import ActionDenied, ApprovalRequired
from envlabel.service.core.approvals import approval_message
from envlabel.service.core.pipeline import run_source
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from envlabel.store.sql import Store
from tests.aws_estate import ROLE
from tests.test_incident import REGION, Twins, build_twins

SKIP = {"SkipFinalSnapshot": True}
#: the default rows, plus: a staging delete that cannot be undone is refused (a recoverable one still needs a person)
POLICY: dict[str, dict[str, str]] = {
    "production": {"read": "allow", "create": "require_approval", "modify": "require_approval", "delete": "deny"},
    "staging": {"read": "allow", "create": "allow", "modify": "allow", "delete": "require_approval",
                "irreversible": "deny"},
    "sandbox": {"read": "allow", "create": "allow", "modify": "allow", "delete": "allow"},
}


@dataclass
class Estate:
    twins: Twins
    config: Config
    config_path: Path
    store: Store

    def rds(self, ou: str) -> Any:
        """The unguarded RDS client of ``ou``'s account: what a person (not the agent) does to the estate."""
        return self.twins.accounts[ou].client("rds", REGION)

    def rescan(self) -> None:
        summary = run_source(self.config, self.store, self.config.sources[0])
        assert summary.complete, summary.errors

    def envlabel(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The ``envlabel`` command on this estate's config, as a person runs it (a real subprocess)."""
        exe = str(Path(sys.executable).parent / "envlabel")
        return subprocess.run([exe, *args, "--config", str(self.config_path)], capture_output=True, text=True,
                              check=False, timeout=120)

    def audit(self) -> list[dict[str, Any]]:
        """``envlabel audit --kind unrecoverable --format json``."""
        done = self.envlabel("audit", "--kind", "unrecoverable", "--format", "json")
        assert done.returncode == 0, done.stderr
        findings: list[dict[str, Any]] = json.loads(done.stdout)
        return findings


@pytest.fixture
def estate(moto: str, tmp_path: Path) -> Iterator[Estate]:
    accounts = build_twins(moto)
    for account in accounts.values():  # no automated backups anywhere: nothing but the database itself
        account.client("rds", REGION).modify_db_instance(DBInstanceIdentifier="orders-db", BackupRetentionPeriod=0,
                                                         ApplyImmediately=True)
    raw = {
        "store": f"sqlite:///{tmp_path / 'envlabel.db'}",
        "approvers": {"staging": ["orders-oncall"]},
        "policy": POLICY,
        "sources": [{"name": "aws", "type": "aws", "endpoint_url": moto, "regions": [REGION],
                     "organization": True, "assume_role": ROLE}],
    }
    config_path = tmp_path / "envlabel.yaml"
    config_path.write_text(json.dumps(raw))
    config = config_from_dict(raw)
    store = open_store(config.store)
    with BackgroundServer(config, store) as server:
        estate = Estate(Twins(moto, server.url, accounts), config, config_path, store)
        estate.rescan()
        yield estate


def delete_check(estate: Estate, ou: str) -> dict[str, Any]:
    return Client(estate.twins.envlabel).check(estate.twins.arn(ou), "rds:DeleteDBInstance", parameters=SKIP)


def test_the_facts_are_scanned_and_shown(estate: Estate) -> None:
    label = Client(estate.twins.envlabel).label(estate.twins.arn("Production"))
    facts = label["facts"]
    assert facts["deletion_protection"] is False
    assert facts["backup_retention_days"] == 0
    assert facts["latest_snapshot"] is None


def test_the_production_orders_db_without_backups_is_irreversible_with_the_reasons(estate: Estate) -> None:
    check = delete_check(estate, "Production")
    recovery = check["recovery"]
    assert recovery["reversible"] is False
    assert check["reversible"] is False
    why = " ".join(recovery["why"]).lower()
    assert "deletion protection" in why
    assert "backup" in why
    assert "skipfinalsnapshot" in why.replace(" ", "")
    assert recovery["how"] is None
    assert check["decision"] == "deny"

    # what a person reads at the terminal says it first
    cli = estate.envlabel("check", "--action", "rds:DeleteDBInstance", "--parameters", json.dumps(SKIP),
                          estate.twins.arn("Production"))
    assert cli.returncode == 5, cli.stderr
    line = next(x for x in cli.stdout.splitlines() if x.strip().startswith("recovery:"))
    assert "IRREVERSIBLE" in line and "deletion protection" in line.lower(), cli.stdout


def test_with_a_snapshot_it_is_recoverable_and_how_names_the_snapshot(estate: Estate) -> None:
    estate.rds("Production").create_db_snapshot(DBSnapshotIdentifier="orders-db-before-cleanup",
                                                DBInstanceIdentifier="orders-db")
    before = delete_check(estate, "Production")
    assert before["recovery"]["reversible"] is False  # what is stored is what the last scan saw
    estate.rescan()
    after = delete_check(estate, "Production")
    assert after["recovery"]["reversible"] is True, after["recovery"]
    assert after["reversible"] is True
    assert "orders-db-before-cleanup" in after["recovery"]["how"]
    assert after["decision"] == "deny"  # recoverable or not, production deletes stay denied by the default row


def test_the_guarded_skip_final_snapshot_delete_of_the_staging_twin_is_refused(estate: Estate) -> None:
    agent = estate.twins.agent("Staging", Client(estate.twins.envlabel))
    with pytest.raises(ActionDenied) as denied:
        agent.delete_db_instance(DBInstanceIdentifier="orders-db", SkipFinalSnapshot=True)
    check = denied.value.check
    assert (check["target"], check["environment"], check["decision"]) == (
        estate.twins.arn("Staging"), "staging", "deny")
    assert check["recovery"]["reversible"] is False
    assert check["rule"] == "policy.staging.irreversible"
    assert "orders-db" in estate.twins.databases("Staging")

    # The same delete keeping a final snapshot can be undone: the delete row decides (a person approves it).
    with pytest.raises(ApprovalRequired) as approval:
        agent.delete_db_instance(DBInstanceIdentifier="orders-db", FinalDBSnapshotIdentifier="orders-db-final")
    assert approval.value.check["recovery"]["reversible"] is True
    assert approval.value.check["rule"] == "policy.staging.delete"
    assert "orders-db" in estate.twins.databases("Staging")

    # the approver sees whether it can be undone, and how, in the notification and on the page
    approval_id = approval.value.approval_id
    assert approval_id is not None
    record = Client(estate.twins.envlabel).approval(approval_id)
    how = approval.value.check["recovery"]["how"]
    assert "orders-db-final" in how
    assert f"*Reversible:* yes — {how}" in approval_message(record, None)["text"]  # type: ignore[arg-type]
    with urllib.request.urlopen(f"{estate.twins.envlabel}/approvals/{approval_id}", timeout=30) as page:
        html = page.read().decode()
    assert "<th>Reversible</th><td>yes: " in html.replace("\n", "") and "orders-db-final" in html


def test_the_audit_reports_the_unrecoverable_production_database_until_it_is_protected(estate: Estate) -> None:
    production = estate.twins.arn("Production")
    found = {f["target"]: f for f in estate.audit()}
    assert set(found) == {production}  # the staging and sandbox twins are not production
    finding = found[production]
    assert finding["severity"] == "high"
    assert "deletion protection is off" in finding["message"]
    assert finding["remediation"]["command"] == (
        f"aws rds modify-db-instance --region {REGION} --db-instance-identifier orders-db --deletion-protection "
        "--backup-retention-period 7 --apply-immediately")

    estate.rds("Production").modify_db_instance(DBInstanceIdentifier="orders-db", DeletionProtection=True,
                                                BackupRetentionPeriod=7, ApplyImmediately=True)
    assert production in {f["target"] for f in estate.audit()}  # the store still holds the last scan's facts
    estate.rescan()
    assert estate.audit() == []


def test_mcp_check_action_carries_recovery_and_tells_the_agent_it_needs_a_human(estate: Estate) -> None:
    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        async with McpClient(streamable_http_client(f"{estate.twins.envlabel}/mcp")) as client:
            tools = {t.name: " ".join((t.description or "").split()) for t in (await client.list_tools()).tools}
            assert "An irreversible (false or \"unknown\") destructive action needs a human" in tools["check_action"]
            answers = []
            for ou in ("Staging", "Sandbox"):
                result = await client.call_tool("check_action", {"target": estate.twins.arn(ou),
                                                                 "action": "rds:DeleteDBInstance", "parameters": SKIP})
                assert not result.is_error and result.structured_content is not None
                answers.append(result.structured_content)
            return answers[0], answers[1]

    staging, sandbox = anyio.run(main)
    assert staging["recovery"]["reversible"] is False
    assert (staging["decision"], staging["rule"]) == ("deny", "policy.staging.irreversible")
    assert "orders-db" in estate.twins.databases("Staging")
    # sandbox deletes are allowed, but this one cannot be undone: the answer tells the agent to ask a person first
    assert (sandbox["decision"], sandbox["recovery"]["reversible"]) == ("allow", False)
    assert "get a person's go-ahead before you perform it" in sandbox["instruction"]
    assert "automated backups are off" in sandbox["instruction"]
