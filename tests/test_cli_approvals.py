"""``envlabel check --principal``, ``envlabel approvals`` and ``envlabel decisions``: the real command over a real
SQLite store filled through the pipeline (tests/api_estate.py): a request made by a check, refused to its own
requester, approved by another person, spent by the next identical check, and the log of all of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from envlabel.service.cli import main
from envlabel.store import open_store
from tests.api_estate import PROD_DB, STAGING_DB, populate

DELETE = "rds:DeleteDBInstance"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    store = open_store(f"sqlite:///{tmp_path / 'envlabel.db'}")
    try:
        populate(store)
    finally:
        store.close()
    path = tmp_path / "envlabel.yaml"
    path.write_text(yaml.safe_dump({
        "store": f"sqlite:///{tmp_path / 'envlabel.db'}",
        "approvers": {"production": ["sre-oncall"], "staging": ["team-lead"]},
        "principals": {"agent": {"groups": ["agents"]}},
    }))
    return path


def cli(config: Path, *args: str, **env: str) -> Result:
    environ: dict[str, str | None] = {"ENVLABEL_PRINCIPAL": None, "ENVLABEL_MODE": None, **env}
    return CliRunner().invoke(main, ["--config", str(config), *args], env=environ, catch_exceptions=False)


def check_json(config: Path, target: str, *args: str, **env: str) -> tuple[int, dict[str, Any]]:
    result = cli(config, "check", "-a", DELETE, target, "--json", *args, **env)
    return result.exit_code, json.loads(result.stdout)


def test_an_approved_request_allows_the_same_check_once_and_never_by_its_requester(config: Path) -> None:
    first = cli(config, "check", "-a", DELETE, STAGING_DB, "--principal", "agent")
    assert first.exit_code == 4, first.output
    listed = json.loads(cli(config, "approvals", "list", "--status", "pending", "--json").stdout)["approvals"]
    assert [(a["principal"], a["target"], a["status"]) for a in listed] == [("agent", STAGING_DB, "pending")]
    approval_id = listed[0]["id"]
    assert f"approval {approval_id} pending: ask team-lead" in first.stdout
    assert "principal: agent" in first.stdout and "rule: policy.staging.delete" in first.stdout
    assert f"orders also exists in production: {PROD_DB}" in first.stdout  # the twin is named

    shown = cli(config, "approvals", "show", approval_id)
    assert shown.stdout.startswith(f"STAGING: {DELETE} on {STAGING_DB}")
    assert "reversible: NO" in shown.stdout and PROD_DB in shown.stdout

    own = cli(config, "approvals", "approve", approval_id, "--by", "agent")
    assert own.exit_code == 1 and "agent" in own.stderr
    assert json.loads(cli(config, "approvals", "show", approval_id, "--json").stdout)["status"] == "pending"

    approved = cli(config, "approvals", "approve", approval_id, "--by", "alice", "--reason", "migration done")
    assert approved.exit_code == 0, approved.output
    # another principal's identical call is not what was approved
    assert check_json(config, STAGING_DB, "--principal", "someone-else")[0] == 4
    code, spent = check_json(config, STAGING_DB, "--principal", "agent")
    assert (code, spent["decision"], spent["rule"]) == (0, "allow", f"approval:{approval_id}")
    code, again = check_json(config, STAGING_DB, "--principal", "agent")
    assert (code, again["decision"]) == (4, "require_approval")
    assert again["approval"]["id"] != approval_id


def test_the_principal_comes_from_the_environment_else_the_login_and_parameters_bind_the_approval(
        config: Path) -> None:
    code, body = check_json(config, STAGING_DB, "--parameters", '{"SkipFinalSnapshot": true}',
                            ENVLABEL_PRINCIPAL="ci-deployer")
    assert (code, body["principal"]) == (4, "ci-deployer")
    approval_id = body["approval"]["id"]
    assert cli(config, "approvals", "approve", approval_id, "--by", "alice").exit_code == 0
    # other parameters: another call, not the approved one
    assert check_json(config, STAGING_DB, "--parameters", '{"SkipFinalSnapshot": false}',
                      ENVLABEL_PRINCIPAL="ci-deployer")[0] == 4
    assert check_json(config, STAGING_DB, "--parameters", '{"SkipFinalSnapshot":true}',
                      ENVLABEL_PRINCIPAL="ci-deployer")[0] == 0
    assert check_json(config, STAGING_DB)[1]["principal"].startswith("user:")


@pytest.mark.parametrize(("args", "message"), [
    (["--parameters", "{not json"], "--parameters is not JSON"),
    (["--parameters", "[1, 2]"], "must be a JSON object"),
    (["--principal", "two words"], "without spaces"),
])
def test_bad_principal_or_parameters_are_usage_errors_that_say_what_to_write(config: Path, args: list[str],
                                                                              message: str) -> None:
    result = cli(config, "check", "-a", DELETE, STAGING_DB, *args)
    assert result.exit_code == 2 and message in result.stderr


def test_a_deny_needs_a_reason_and_a_denied_request_is_not_spent(config: Path) -> None:
    approval_id = check_json(config, STAGING_DB, "--principal", "agent")[1]["approval"]["id"]
    assert cli(config, "approvals", "deny", approval_id, "--by", "alice", "--reason", " ").exit_code == 2
    denied = cli(config, "approvals", "deny", approval_id, "--by", "alice", "--reason", "wrong database")
    assert denied.exit_code == 0 and "stays refused" in denied.stdout
    assert cli(config, "approvals", "approve", approval_id, "--by", "bob").exit_code == 1  # decided already
    assert check_json(config, STAGING_DB, "--principal", "agent")[0] == 4
    assert cli(config, "approvals", "show", "apr-000000000000").exit_code == 1


def test_decisions_lists_every_check_with_its_principal_and_filters(config: Path) -> None:
    cli(config, "check", "-a", DELETE, STAGING_DB, "--principal", "agent")
    cli(config, "check", "-a", DELETE, PROD_DB, "--principal", "bob")
    entries = json.loads(cli(config, "decisions", "--json").stdout)["decisions"]
    assert [(e["principal"], e["decision"], e["environment"], e["interface"]) for e in entries] == [
        ("bob", "deny", "production", "cli"), ("agent", "require_approval", "staging", "cli")]
    assert entries[1]["approval_id"] is not None and entries[1]["groups"] == ["agents"]
    only_bob = json.loads(cli(config, "decisions", "--principal", "bob", "--json").stdout)["decisions"]
    assert [e["target"] for e in only_bob] == [PROD_DB]
    text = cli(config, "decisions", "--decision", "deny", "--since", "1h").stdout.splitlines()
    assert text[0].split() == ["TIME", "PRINCIPAL", "INTERFACE", "DECISION", "ENVIRONMENT", "ACTION", "TARGET",
                               "RULE"]
    assert len(text) == 2 and text[1].split()[1:4] == ["bob", "cli", "deny"]
    assert text[0].index("TARGET") == text[1].index(PROD_DB)  # the columns line up
    bad = cli(config, "decisions", "--since", "last tuesday")
    assert bad.exit_code == 2 and "90m, 24h, 7d" in bad.stderr


def test_audit_mode_exits_0_saying_what_would_have_happened_and_would_block_reports_it(config: Path) -> None:
    result = cli(config, "check", "-a", DELETE, PROD_DB, "--principal", "agent", ENVLABEL_MODE="audit")
    assert result.exit_code == 0
    assert "audit mode: would have been deny" in result.stdout
    code, body = check_json(config, STAGING_DB, "--principal", "agent", ENVLABEL_MODE="audit")
    assert (code, body["decision"], body["mode"]) == (0, "require_approval", "audit")
    assert "approval" not in body  # nothing is requested in audit mode
    assert json.loads(cli(config, "approvals", "list", "--json").stdout)["approvals"] == []
    cli(config, "check", "-a", DELETE, PROD_DB, "--principal", "bob")  # enforced: not in the report
    report = json.loads(cli(config, "decisions", "--would-block", "--json").stdout)
    assert report["total"] == 2
    assert [(g["principal"], g["environment"], g["decisions"]) for g in report["by"]] == [
        ("agent", "production", {"deny": 1, "require_approval": 0}),
        ("agent", "staging", {"deny": 0, "require_approval": 1})]
    text = cli(config, "decisions", "--would-block").stdout
    assert "would have blocked 2 check(s)" in text and "agent" in text and "bob" not in text
    bad = cli(config, "check", "-a", DELETE, PROD_DB, ENVLABEL_MODE="shadow")
    # the config loader reads ENVLABEL_MODE as config `mode` too, and refuses it first
    assert bad.exit_code == 2 and "mode" in bad.stderr and "audit" in bad.stderr


@pytest.mark.parametrize("args", [("decisions", "--since"), ("get", STAGING_DB, "--at")])
def test_a_time_with_no_utc_moment_is_a_usage_error(config: Path, args: tuple[str, ...]) -> None:
    for moment in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"):
        result = cli(config, *args, moment)
        assert result.exit_code == 2 and "years 1 to 9999" in result.stderr, (result.exit_code, result.output)
        assert "Traceback" not in result.output
