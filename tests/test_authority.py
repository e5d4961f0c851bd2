"""Action classification and policy decisions (service.authority), and ``envlabel check``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from envlabel.actions import DELETE, classify
from envlabel.config import Config, config_from_dict
from envlabel.errors import ConfigError
from envlabel.labelers.decision import decide
from envlabel.service.cli import main
from envlabel.service.core.query import Query
from envlabel.store import open_store
from tests.api_estate import (
    GONE_DB,
    NEVER_SEEN,
    PROD_DB,
    PROD_POD,
    SANDBOX_DB,
    STAGING_DB,
    STALE_DB,
    UNLABELED,
    make_config,
    populate,
)


@pytest.mark.parametrize(("action", "expected"), [
    ("rds:DeleteDBInstance", "delete"), ("DeleteDBInstance", "delete"), ("TerminateInstances", "delete"),
    ("ec2:TerminateInstances", "delete"), ("s3:DeleteBucket", "delete"), ("PurgeQueue", "delete"),
    ("RemoveRoleFromInstanceProfile", "modify"), ("ReleaseAddress", "delete"), ("DeregisterImage", "delete"),
    ("dynamodb:BatchWriteItem", "delete"), ("delete_db_instance", "delete"), ("terminate_instances", "delete"),
    ("ec2:RunInstances", "create"), ("CreateDBInstance", "create"), ("s3:PutObject", "create"),
    ("RestoreDBInstanceFromDBSnapshot", "create"), ("create", "create"),
    ("ModifyDBInstance", "modify"), ("UpdateFunctionCode", "modify"), ("lambda:UpdateFunctionConfiguration",
                                                                        "modify"),
    ("TagResource", "modify"), ("AttachVolume", "modify"), ("s3:PutBucketPolicy", "modify"),
    ("StopInstances", "modify"), ("RebootDBInstance", "modify"), ("DeleteTags", "modify"),
    ("update", "modify"), ("patch", "modify"),
    ("DescribeInstances", "read"), ("rds:DescribeDBInstances", "read"), ("ListBuckets", "read"),
    ("s3:GetObject", "read"), ("dynamodb:BatchGetItem", "read"), ("get", "read"), ("list", "read"),
    ("watch", "read"), ("describe_instances", "read"),
    ("delete", "delete"), ("deletecollection", "delete"), ("InvokeFunction", "modify"),
])
def test_classify(action: str, expected: str) -> None:
    got = classify(action)
    assert got.action_class == expected, got.reason
    assert got.recognized
    assert got.reversible is (expected != "delete")


@pytest.mark.parametrize("action", ["Frobnicate", "ec2:*", "", "   ", "s3:", "escalate", "ec2:DescribeDBInstances",
                                    "rm -rf /", "Delete Everything", "get-rid-of-orders-db",
                                    "dynamodb:BatchDeleteItem"])
def test_unrecognized_action_is_delete_and_says_so(action: str) -> None:
    got = classify(action)
    assert got.action_class == DELETE and not got.recognized and not got.reversible
    assert "fail closed" in got.reason and "not a recognized" in got.reason


def label(environment: str = "production", *, found: bool = True, stale: bool = False, conflict: bool = False,
          evidence: list[dict[str, str]] | None = None, **extra: Any) -> dict[str, Any]:
    default = [{"signal": "inherited", "environment": environment, "source": "ou-1", "detail": "OU /Root/X"}]
    return {"target": "arn:aws:rds:us-east-1:222222222222:db:orders", "found": found, "environment": environment,
            "authoritative": found and environment != "unknown" and not stale, "decided_by": "inherited",
            "conflict": conflict, "stale": stale, "observed_at": "2026-03-01T00:00:00.000000Z",
            "evidence": evidence if evidence is not None else default, **extra}


CONFIG = config_from_dict({"approvers": {"production": ["sre-oncall"], "staging": ["team-lead"]}})


@pytest.mark.parametrize(("environment", "action", "decision"), [
    ("production", "DescribeDBInstances", "allow"), ("production", "CreateDBInstance", "require_approval"),
    ("production", "ModifyDBInstance", "require_approval"), ("production", "DeleteDBInstance", "deny"),
    ("staging", "DescribeDBInstances", "allow"), ("staging", "CreateDBInstance", "allow"),
    ("staging", "ModifyDBInstance", "allow"), ("staging", "DeleteDBInstance", "require_approval"),
    ("sandbox", "DescribeDBInstances", "allow"), ("sandbox", "CreateDBInstance", "allow"),
    ("sandbox", "ModifyDBInstance", "allow"), ("sandbox", "DeleteDBInstance", "allow"),
])
def test_default_policy_table(environment: str, action: str, decision: str) -> None:
    body = decide(CONFIG, action, label(environment))
    assert body["decision"] == decision
    assert body["environment"] == environment
    assert set(body) == {"target", "action", "action_class", "environment", "decision", "reversible", "reasons",
                         "approvers", "label", "understood_as", "rule", "recovery"}
    assert body["rule"] == f"policy.{environment}.{body['action_class']}"
    assert body["approvers"] == (CONFIG.approvers.get(environment, []) if decision == "require_approval" else [])
    assert f"label {environment} decided by inherited: OU /Root/X (ou-1)" in body["reasons"]


@pytest.mark.parametrize(("kwargs", "why"), [
    ({"environment": "unknown", "evidence": []}, "no environment signal"),
    ({"environment": "unknown", "found": False, "evidence": []}, "never been seen"),
    ({"environment": "unknown", "found": False, "evidence": [], "gone_at": "2026-03-01T00:00:00.000000Z"},
     "gone"),
    ({"environment": "sandbox", "stale": True}, "stale"),
])
def test_fail_closed_as_production(kwargs: dict[str, Any], why: str) -> None:
    body = decide(CONFIG, "DeleteDBInstance", label(**kwargs))
    assert (body["environment"], body["decision"]) == ("production", "deny")
    assert any(why in r and "decided as production (fail closed)" in r for r in body["reasons"]), body["reasons"]
    approval = decide(CONFIG, "ModifyDBInstance", label(**kwargs))
    assert approval["decision"] == "require_approval" and approval["approvers"] == ["sre-oncall"]


def test_conflict_is_cited() -> None:
    evidence = [{"signal": "tag", "environment": "sandbox", "source": "db", "detail": "tag env=dev"},
                {"signal": "inherited", "environment": "production", "source": "ou-1", "detail": "OU /Root/Prod"}]
    body = decide(CONFIG, "delete", label("production", conflict=True, evidence=evidence))
    text = " ".join(body["reasons"])
    assert "conflicting signals: tag sandbox (tag env=dev)" in text and body["decision"] == "deny"


def test_custom_policy_and_missing_class_fails_closed() -> None:
    policy: dict[str, Any] = {"production": {"read": "allow"}, "dr": {"read": "allow", "delete": "allow"},
                              "sandbox": {"read": "allow", "delete": "allow"}}
    with pytest.raises(ConfigError, match=r"policy\.dr: no decision for create, modify"):  # validate refuses it
        config_from_dict({"environments": ["production", "dr", "sandbox"], "policy": policy})
    # and should a row still lack a class (a config built in code), the decision fails closed
    config = config_from_dict({}).model_copy(update={"environments": ["production", "dr", "sandbox"],
                                                     "policy": policy})
    assert decide(config, "DeleteDBInstance", label("dr"))["decision"] == "allow"
    missing = decide(config, "ModifyDBInstance", label("dr"))
    assert missing["decision"] == "deny" and "policy.dr has no entry for modify" in missing["reasons"][-1]
    assert decide(config, "delete", label("unknown", evidence=[]))["environment"] == "production"


def test_require_approval_without_approvers_says_whom_to_ask() -> None:
    body = decide(config_from_dict({}), "ModifyDBInstance", label("production"))
    assert body["approvers"] == [] and "no approvers are configured for production" in body["reasons"][-1]


# -- envlabel check over a real SQLite store ----------------------------------------------------
@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("check")
    config: Config = make_config(str(tmp / "envlabel.db"))
    populate(open_store(config.store))
    path = tmp / "envlabel.yaml"
    path.write_text(json.dumps(config.model_dump(mode="json")))
    return path


@pytest.mark.parametrize(("target", "action", "code", "environment"), [
    (PROD_DB, "rds:DeleteDBInstance", 5, "production"),
    (STAGING_DB, "rds:DeleteDBInstance", 4, "staging"),  # the twin of PROD_DB
    (SANDBOX_DB, "rds:DeleteDBInstance", 0, "sandbox"),
    (PROD_DB, "rds:DescribeDBInstances", 0, "production"),
    (PROD_POD, "patch", 4, "production"),
    (UNLABELED, "s3:DeleteBucket", 5, "production"),
    (STALE_DB, "DeleteDBInstance", 5, "production"),
    (GONE_DB, "DeleteDBInstance", 5, "production"),
    (NEVER_SEEN, "DeleteDBInstance", 5, "production"),
    (SANDBOX_DB, "Frobnicate", 0, "sandbox"),  # unknown action = delete, and sandbox allows delete
])
def test_check_command_exit_codes(config_file: Path, target: str, action: str, code: int, environment: str) -> None:
    result = CliRunner().invoke(main, ["check", "--config", str(config_file), "--action", action, target, "--json"])
    assert result.exit_code == code, result.output
    body = json.loads(result.output)
    assert body["environment"] == environment and body["label"]["target"] == target


def test_check_command_text_and_malformed_target(config_file: Path) -> None:
    runner = CliRunner()
    text = runner.invoke(main, ["check", "--config", str(config_file), "--action", "ModifyDBInstance", PROD_DB])
    assert text.exit_code == 4
    assert text.output.startswith(f"require_approval: ModifyDBInstance [understood as rds:ModifyDBInstance] "
                                  f"(modify) on {PROD_DB} as production (approvers: sre-oncall, dba-lead)")
    bad = runner.invoke(main, ["check", "--config", str(config_file), "--action", "delete", "db-orders"])
    assert bad.exit_code == 2 and "accepted target forms" in bad.output


def test_check_uses_the_query_layer(config_file: Path) -> None:
    from envlabel.config import load_config
    from envlabel.service.core.check import check

    config = load_config(config_file)
    body = check(Query(config, open_store(config.store)), "arn:aws:organizations::111111111111:account/o-test/"
                 "222222222222", "organizations:MoveAccount")
    assert (body["label"]["environment"], body["action_class"], body["decision"]) == ("production", "modify",
                                                                                     "require_approval")


# -- a free-form action name against production, over the CLI and the real HTTP API ----------------
def test_cli_denies_a_free_form_name_on_production_and_says_it_was_not_recognized(config_file: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["check", "--config", str(config_file), "--action", "get-rid-of-orders-db", PROD_DB,
                                  "--json"])
    assert result.exit_code == 5, result.output
    body = json.loads(result.output)
    assert (body["decision"], body["action_class"], body["understood_as"]) == ("deny", "delete", None)
    assert "rds:DeleteDBInstance" in body["reasons"][0]  # the reason lists the forms to pass
    text = runner.invoke(main, ["check", "--config", str(config_file), "--action", "get-rid-of-orders-db", PROD_DB])
    assert text.output.startswith(f"deny: get-rid-of-orders-db [not recognized] (delete) on {PROD_DB}")
    understood = runner.invoke(main, ["check", "--config", str(config_file), "--action", "rds delete-db-instance",
                                      PROD_DB, "--json"])
    assert json.loads(understood.output)["understood_as"] == "rds:DeleteDBInstance"


def test_http_api_denies_a_free_form_name_on_production(config_file: Path) -> None:
    import httpx

    from envlabel.config import load_config
    from envlabel.service.daemon.server import BackgroundServer

    config = load_config(config_file)
    with BackgroundServer(config, open_store(config.store)) as server, httpx.Client(base_url=server.url) as api:
        for action in ("get-rid-of-orders-db", "describe_and_delete", "rds:DeleteDBInstance:get"):
            body = api.post("/v1/check", json={"target": PROD_DB, "action": action}).json()
            assert (body["decision"], body["understood_as"], body["reversible"]) == ("deny", None, False), action
        known = api.post("/v1/check", json={"target": PROD_DB, "action": "s3.delete_bucket"}).json()
        assert (known["decision"], known["understood_as"]) == ("deny", "s3:DeleteBucket")
        read = api.post("/v1/check", json={"target": PROD_DB, "action": "rds:describedbinstances"}).json()
        assert (read["decision"], read["understood_as"]) == ("allow", "rds:DescribeDBInstances")
        schema = api.get("/openapi.json").json()["components"]["schemas"]["CheckDoc"]["properties"]
        assert "understood_as" in schema
        # the production database is still there, still production
        label = api.get("/v1/label", params={"target": PROD_DB}).json()
        assert (label["found"], label["environment"]) == (True, "production")
