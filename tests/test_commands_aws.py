"""envlabel.commands.aws: AWS CLI command lines read over botocore's real service models into the operations
the boto3 guard would check; the account from real config files and from a real moto STS; and
decide_command against the real envlabel server (BackgroundServer over loopback, a real SQLite store)."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envlabel.client import Client
from envlabel.commands import (
    CommandContext,
    CommandPlan,
    Operation,
    Unparsed,
    aws_account,
    decide_command,
    plan_command,
    unknown,
)
from envlabel.commands.aws_params import Shorthand
from envlabel.config import config_from_dict
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from tests.conftest import free_port, wait_for_http
from tests.estates import scan_of

PROD, STAGING, SANDBOX = "222222222222", "333333333333", "444444444444"
MOTO_ACCOUNT = "123456789012"  # the account moto gives any static test keys
R = "us-east-1"
CONFIG = f"""
[default]
region = {R}

[profile prod]
role_arn = arn:aws:iam::{PROD}:role/admin
source_profile = base
region = {R}

[profile staging]
role_arn = arn:aws:iam::{STAGING}:role/admin
source_profile = base

[profile sbx]
sso_session = corp
sso_account_id = {SANDBOX}
sso_role_name = Dev
region = eu-west-1

[profile base]
region = {R}

[profile process]
credential_process = /usr/local/bin/get-creds

[profile broken-role]
role_arn = not-an-arn
"""
CREDENTIALS = """
[base]
aws_access_key_id = AKIABASE
aws_secret_access_key = base-secret

[static]
aws_access_key_id = testing
aws_secret_access_key = testing

[role-in-credentials]
role_arn = arn:aws:iam::555555555555:role/x
source_profile = static
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text(CONFIG)
    (tmp_path / ".aws" / "credentials").write_text(CREDENTIALS)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    aws_account.forget()
    return tmp_path


def context(home: Path, **environ: str) -> CommandContext:
    return CommandContext(environ={"HOME": str(home), **environ}, cwd=str(home))


def ops(line: str, home: Path, **environ: str) -> list[tuple[str, str, bool, str]]:
    plan = plan_command(line, context(home, **environ))
    assert not plan.unparsed, plan.unparsed
    return [(o.target, o.action, o.contents, o.fallback) for o in plan.operations]


def unparsed(line: str, home: Path, **environ: str) -> Unparsed:
    plan = plan_command(line, context(home, **environ))
    assert not plan.operations and len(plan.unparsed) == 1, plan
    return plan.unparsed[0]


def arn(service: str, rest: str, account: str = PROD, region: str = R) -> str:
    return f"arn:aws:{service}:{region}:{account}:{rest}"


# -- reading commands over botocore's models --------------------------------------------------------
@pytest.mark.parametrize(("line", "expected"), [
    ("aws rds delete-db-instance --db-instance-identifier orders-db --profile prod",
     [(arn("rds", "db:orders-db"), "rds:DeleteDBInstance", False, "")]),
    ("aws --profile prod rds delete-db-instance --db-instance-identifier=orders-db --skip-final-snapshot "
     "--no-delete-automated-backups", [(arn("rds", "db:orders-db"), "rds:DeleteDBInstance", False, "")]),
    ("aws --profile prod rds delete-db-instance --db-instance-ident orders-db",  # argparse's abbreviation
     [(arn("rds", "db:orders-db"), "rds:DeleteDBInstance", False, "")]),
    # the CLI's main parser takes abbreviations of its global options first, wherever they stand
    ("aws --profile sbx rds delete-db-instance --db-instance-identifier orders-db --prof prod --reg eu-west-1",
     [(arn("rds", "db:orders-db", region="eu-west-1"), "rds:DeleteDBInstance", False, "")]),
    ("aws --profile prod elasticache create-replication-group --replication-group-id g --replication-group-"
     "description d --preferred-cache-cluster-a-zs us-east-1a --cache-subnet-group-name s",  # another CLI's split
     [(arn("elasticache", "subnetgroup:s"), "elasticache:CreateReplicationGroup", False, PROD)]),
    ("AWS_PROFILE=prod /usr/local/bin/aws ec2 terminate-instances --instance-ids i-1 i-2 --region eu-west-1",
     [(arn("ec2", f"instance/{i}", region="eu-west-1"), "ec2:TerminateInstances", False, "") for i in ("i-1", "i-2")]),
    ("aws --profile prod ec2 terminate-instances --instance-ids '[\"i-3\"]' --dry-run",
     [(arn("ec2", "instance/i-3"), "ec2:TerminateInstances", False, "")]),
    ("aws --profile prod s3api delete-bucket --bucket exports",
     [("arn:aws:s3:::exports", "s3:DeleteBucket", False, "")]),
    ("aws --profile prod lambda delete-function --function-name worker:live",
     [(arn("lambda", "function:worker"), "lambda:DeleteFunction", False, "")]),
    ("aws --profile prod lambda invoke --function-name worker out.json",  # the streaming output's file
     [(arn("lambda", "function:worker"), "lambda:Invoke", False, "")]),
    ("aws --profile prod ec2 create-tags --resources i-1 --tags Key=env,Value=dev",
     [(arn("ec2", "instance/i-1"), "ec2:CreateTags", False, "")]),
    ("aws --profile prod events put-targets --rule r --targets Id=1,Arn=arn:aws:lambda:us-east-1:555555555555:"
     "function:f", [(arn("events", "rule/r"), "events:PutTargets", False, PROD),
                    (arn("lambda", "function:f", "555555555555"), "events:PutTargets", False, "")]),
    ("aws --profile prod sqs delete-queue --queue-url https://sqs.eu-west-1.amazonaws.com/222222222222/jobs",
     [(arn("sqs", "jobs", region="eu-west-1"), "sqs:DeleteQueue", False, PROD)]),
    ("aws --profile prod rds create-db-instance --db-instance-identifier new --engine postgres "
     "--db-instance-class db.t3.micro --allocated-storage 20", [(PROD, "rds:CreateDBInstance", False, "")]),
    ("aws --profile prod ec2 run-instances --image-id ami-1 --count 2 --instance-type t3.micro",
     [(f"arn:aws:ec2:{R}::image/ami-1", "ec2:RunInstances", False, PROD)]),  # the guard's fallback for an AMI
    ("aws --profile prod eks create-cluster --name c --kubernetes-version 1.29 --role-arn "
     f"arn:aws:iam::{PROD}:role/eks --resources-vpc-config subnetIds=subnet-1,subnet-2",
     [(f"arn:aws:iam::{PROD}:role/eks", "eks:CreateCluster", False, PROD), (PROD, "eks:CreateCluster", False, "")]),
    ("aws --profile prod emr terminate-clusters --cluster-ids j-1 j-2", [(PROD, "emr:TerminateJobFlows", True, "")]),
    ("aws --profile prod ecr get-login-password", [(PROD, "ecr:GetAuthorizationToken", True, "")]),
    ("aws --profile prod rds generate-db-auth-token --hostname orders-db.c1x2.eu-west-1.rds.amazonaws.com "
     "--port 5432 --username app", [(arn("rds", "db:orders-db", region="eu-west-1"), "rds-db:connect", False, "")]),
    # the high-level s3 commands
    ("aws --profile prod s3 rm s3://exports/a.csv", [("arn:aws:s3:::exports", "s3:DeleteObject", False, "")]),
    ("aws --profile prod s3 rm s3://exports/ --recursive --exclude '*.keep'",
     [("arn:aws:s3:::exports", "s3:DeleteObjects", False, "")]),
    ("aws --profile prod s3 rb s3://exports --force", [("arn:aws:s3:::exports", "s3:DeleteBucket", False, ""),
                                                       ("arn:aws:s3:::exports", "s3:DeleteObjects", False, "")]),
    ("aws --profile prod s3 mv s3://a/k s3://b/k", [("arn:aws:s3:::a", "s3:DeleteObject", False, ""),
                                                   ("arn:aws:s3:::b", "s3:PutObject", False, "")]),
    ("aws --profile prod s3 sync ./site s3://web --delete --sse AES256",
     [("arn:aws:s3:::web", "s3:PutObject", False, ""), ("arn:aws:s3:::web", "s3:DeleteObjects", False, "")]),
    ("aws --profile prod s3 mb s3://new-bucket", [(PROD, "s3:CreateBucket", False, "")]),
    ("aws --profile prod s3 cp ./x s3://arn:aws:s3:us-east-1:222222222222:accesspoint/ap/k",
     [(arn("s3", "accesspoint/ap"), "s3:PutObject", False, PROD)]),
])
def test_commands_become_the_operations_the_guard_would_check(home: Path, line: str,
                                                              expected: list[tuple[str, str, bool, str]]) -> None:
    assert ops(line, home) == expected


@pytest.mark.parametrize("line", [
    "aws", "aws --version", "aws --vers", "aws help", "aws rds help", "aws rds delete-db-instance help",
    "aws configure set region eu-west-1", "aws sts get-caller-identity", "aws sts assume-role --role-arn x",
    "aws sso login", "aws --profile prod rds describe-db-instances --db-instance-identifier x --bogus-flag",
    "aws --profile prod rds wait db-instance-deleted --db-instance-identifier x",
    "aws --profile prod rds delete-db-instance --generate-cli-skeleton",
    "aws --profile prod s3 ls s3://exports", "aws --profile prod s3 cp s3://exports/a.csv .",
    "aws --profile prod s3 rm s3://exports/a.csv --dryrun",
    "aws --profile prod s3api get-object --bucket b --key k out",
    "aws --profile prod eks update-kubeconfig --name orders", "aws --profile prod logs tail /aws/lambda/x --follow",
])
def test_reads_help_and_local_commands_perform_nothing(home: Path, line: str) -> None:
    assert not plan_command(line, context(home)).touches_infrastructure


def test_parameters_come_from_documents_and_files(home: Path) -> None:
    (home / "params.json").write_text(json.dumps({"DBInstanceIdentifier": "from-file", "SkipFinalSnapshot": True}))
    (home / "ids.txt").write_text("i-9")
    assert ops("aws --profile prod rds delete-db-instance --cli-input-json file://params.json", home) == [
        (arn("rds", "db:from-file"), "rds:DeleteDBInstance", False, "")]
    # the command line's own flags win over the document
    assert ops("aws --profile prod rds delete-db-instance --cli-input-json '{\"DBInstanceIdentifier\": \"a\"}' "
               "--db-instance-identifier b", home) == [(arn("rds", "db:b"), "rds:DeleteDBInstance", False, "")]
    assert ops("aws --profile prod ec2 terminate-instances --instance-ids file://ids.txt", home) == [
        (arn("ec2", "instance/i-9"), "ec2:TerminateInstances", False, "")]


def test_the_cli_shorthand() -> None:
    assert Shorthand("Key=env,Value=prod").parse() == {"Key": "env", "Value": "prod"}
    assert Shorthand("Name=tag:env,Values=a,b,c").parse() == {"Name": "tag:env", "Values": ["a", "b", "c"]}
    assert Shorthand("Ids=[a,b],Nested={K=V,L=[1,2]},Q='x,y'").parse() == {
        "Ids": ["a", "b"], "Nested": {"K": "V", "L": ["1", "2"]}, "Q": "x,y"}
    with pytest.raises(ValueError, match="Key=Value"):
        Shorthand("just-a-word").parse()


@pytest.mark.parametrize(("line", "scope", "reason"), [
    ("aws --profile prod rdss delete-db-instance --db-instance-identifier x", PROD, "no service 'rdss'"),
    ("aws --profile prod rds delete-db-instances --db-instance-identifier x", PROD, "no command"),
    ("aws --profile prod rds delete-db-instance --db-instance-idetnifier x", PROD, "is not a parameter"),
    ("aws --profile prod rds delete-db-instance --db-instance-identifier $DB", PROD, "($DB) is computed"),
    ("aws --profile prod rds delete-db-instance --db-instance-identifier", PROD, "needs a value"),
    ("aws --profile prod rds delete-db-instance --db-instance-identifier a b", PROD, "takes no argument 'b'"),
    ("aws --profile prod rds delete-db-instance --cli-input-json file://missing.json", PROD, "cannot read"),
    ("aws --profile prod ec2 create-tags --resources i-1 --tags '{bad json'", PROD, "not valid JSON"),
    ("aws --profile prod ec2 create-tags --resources i-1 --tags Key", PROD, "shorthand"),
    ("aws --profile prod $SERVICE delete-thing --id x", PROD, "computed when it runs"),
    ("kubectl get x | xargs -n1 aws --profile prod rds delete-db-instance --db-instance-identifier", PROD,
     "<the arguments xargs reads from its input>) is computed"),
    ("aws --profile prod s3 remove s3://x", PROD, "no command 'remove'"),
    ("aws --profile prod s3 rm s3://x --sneaky y", PROD, "not an option"),
    ("aws --profile prod s3 rm", PROD, "takes 1 path"),
    ("aws --profile nope rds delete-db-instance --db-instance-identifier x", "", "profile nope is in neither"),
    ("aws --profile process rds delete-db-instance --db-instance-identifier x", "", "credential_process"),
    ("aws --profile broken-role rds delete-db-instance --db-instance-identifier x", "", "not an IAM role ARN"),
    ("aws --profile $P rds delete-db-instance --db-instance-identifier x", "", "computed when the command runs"),
    ("sudo aws rds delete-db-instance --db-instance-identifier x", "", "home directory"),
    ("aws --profile prod rds delete-db-instance --db-instance-identifier x --region $R", "", "region"),
    ("aws --profile static rds delete-db-instance --db-instance-identifier x --endpoint-url $E", "",
     "--endpoint-url ($E) is computed"),
])
def test_what_cannot_be_read_is_not_understood_with_its_account(home: Path, line: str, scope: str,
                                                                 reason: str) -> None:
    found = unparsed(line, home)
    assert found.tool == "aws" and found.scope == scope and reason in found.reason, found
    assert found.command  # filled in: the simple command as written


def test_xargs_with_its_input_shown_is_read(home: Path) -> None:
    assert ops("echo orders-db | xargs aws --profile prod rds delete-db-instance --db-instance-identifier",
               home) == [(arn("rds", "db:orders-db"), "rds:DeleteDBInstance", False, "")]


# -- which account --------------------------------------------------------------------------------
def test_the_account_follows_the_cli_credential_chain(home: Path) -> None:
    delete = "rds delete-db-instance --db-instance-identifier d"
    assert ops(f"aws --profile staging {delete}", home)[0][0] == arn("rds", "db:d", STAGING)
    assert ops(f"AWS_PROFILE=sbx aws {delete}", home)[0][0] == arn("rds", "db:d", SANDBOX, "eu-west-1")
    assert ops(f"AWS_DEFAULT_PROFILE=prod aws {delete}", home)[0][0] == arn("rds", "db:d")
    assert ops(f"aws --profile role-in-credentials {delete}", home)[0][0] == arn("rds", "db:d", "555555555555")
    token = home / "token"
    token.write_text("jwt")
    assert ops(f"aws {delete}", home, AWS_ROLE_ARN=f"arn:aws:iam::{STAGING}:role/ci",
               AWS_WEB_IDENTITY_TOKEN_FILE=str(token))[0][0] == arn("rds", "db:d", STAGING)
    # a line cannot choose its account by naming one: AWS_ACCOUNT_ID only shapes endpoints
    assert ops(f"AWS_ACCOUNT_ID={SANDBOX} aws --profile prod {delete}", home)[0][0] == arn("rds", "db:d")
    # files named by the environment, as the CLI reads them
    other = home / "other-config"
    other.write_text(f"[profile prod]\nrole_arn = arn:aws:iam::{STAGING}:role/x\n")
    assert ops(f"AWS_CONFIG_FILE={other} aws --profile prod {delete}", home)[0][0] == arn("rds", "db:d", STAGING)
    # a bucket's ARN names no account: none is looked for (a profile that cannot be told does not matter)
    assert ops("aws --profile process s3 rb s3://b", home) == [("arn:aws:s3:::b", "s3:DeleteBucket", False, "")]


def test_static_keys_are_attributed_by_sts_on_moto(home: Path, moto: str) -> None:
    delete = f"rds delete-db-instance --db-instance-identifier d --endpoint-url {moto}"
    assert ops(f"aws --profile static {delete}", home)[0][0] == arn("rds", "db:d", MOTO_ACCOUNT)
    assert ops(f"aws {delete}", home, AWS_ACCESS_KEY_ID="AKIAENV", AWS_SECRET_ACCESS_KEY="x")[0][0] == arn(
        "rds", "db:d", MOTO_ACCOUNT)
    # keys in the environment win over AWS_PROFILE, an explicit --profile wins over them (as botocore)
    assert ops(f"AWS_PROFILE=prod aws {delete}", home, AWS_ACCESS_KEY_ID="AKIAENV",
               AWS_SECRET_ACCESS_KEY="x")[0][0] == arn("rds", "db:d", MOTO_ACCOUNT)
    assert ops(f"aws --profile prod {delete}", home, AWS_ACCESS_KEY_ID="AKIAENV",
               AWS_SECRET_ACCESS_KEY="x")[0][0] == arn("rds", "db:d")
    # an unreachable STS: not understood, fail closed
    dead = f"http://127.0.0.1:{free_port()}"
    found = unparsed(f"aws --profile static rds delete-db-instance --db-instance-identifier d --endpoint-url {dead}",
                     home)
    assert "sts:GetCallerIdentity failed" in found.reason and found.scope == ""


@pytest.fixture
def own_moto() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A moto server of this test's own, so the test can stop it."""
    port = free_port()
    exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    process = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/moto-api/data.json", process)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_sts_answers_are_cached_on_disk_only_where_no_one_else_can_write(
        home: Path, own_moto: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, process = own_moto
    line = f"aws --profile static rds delete-db-instance --db-instance-identifier d --endpoint-url {url}"
    assert ops(line, home)[0][0] == arn("rds", "db:d", MOTO_ACCOUNT)
    cache = home / "cache" / "envlabel" / "aws-accounts.json"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert "testing" not in cache.read_text()  # a hash of the key: no secret on disk
    process.terminate()
    process.wait(timeout=10)
    aws_account.forget()
    assert ops(line, home)[0][0] == arn("rds", "db:d", MOTO_ACCOUNT)  # STS is gone: the disk answered
    # a cache others could have written is not believed
    cache.chmod(0o666)
    aws_account.forget()
    assert "sts:GetCallerIdentity failed" in unparsed(line, home).reason


# -- decided by the real server -------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """envlabel serving labels: a production, a staging and a sandbox account, each with an orders-db."""
    accounts = {PROD: "prd", STAGING: "staging", SANDBOX: "sandbox"}
    resources = [Resource(a, "aws", "aws:account", f"orders-{e}", None, {"env": e}, "org")
                 for a, e in accounts.items()]
    resources += [Resource(arn("rds", "db:orders-db", a), "aws", "rds:db", "orders-db", a, {}, f"{a}/{R}")
                  for a in accounts]
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('commands') / 'envlabel.db'}")
    now = utcnow()
    commit_scan(store, Taxonomy(), scan_of(resources), now, now)
    with BackgroundServer(config_from_dict({}), store) as running:
        yield running.url


def decided(line: str, home: Path, url: str, *, parameters: bool = False, **environ: str) -> dict[str, Any]:
    plan = plan_command(line, context(home, **environ))
    with Client(url) as client:
        return decide_command(plan, lambda op: client.check(op.target, op.action, op.contents,
                                                            parameters=op.parameters if parameters else None))


def test_the_incident_through_the_shell_is_denied_with_the_evidence(home: Path, server: str) -> None:
    # told to delete the staging orders-db, given the production account's profile
    answer = decided("AWS_PROFILE=prod aws rds delete-db-instance --db-instance-identifier orders-db "
                     "--skip-final-snapshot", home, server)
    assert answer["decision"] == "deny" and answer["unparsed"] == []
    (check,) = answer["operations"]
    assert (check["target"], check["environment"], check["action"]) == (
        arn("rds", "db:orders-db"), "production", "rds:DeleteDBInstance")
    assert any(e["detail"].startswith("tag env=prd") for e in check["label"]["evidence"])
    assert check["command"].startswith("AWS_PROFILE=prod aws rds") and check["tool"] == "aws"
    staging = decided("aws --profile staging rds delete-db-instance --db-instance-identifier orders-db", home,
                      server)
    assert staging["decision"] == "require_approval"


def test_the_commands_parameters_reach_the_check(home: Path, server: str) -> None:
    """--skip-final-snapshot travels with the check (as the hooks send it): recovery reads it, and an approval of
    one call is not an approval of the same call with other flags."""
    line = "aws --profile staging rds delete-db-instance --db-instance-identifier orders-db"
    plan = plan_command(f"{line} --skip-final-snapshot", context(home))
    (operation,) = plan.operations
    assert operation.parameters == {"DBInstanceIdentifier": "orders-db", "SkipFinalSnapshot": True}
    skipped = decided(f"{line} --skip-final-snapshot", home, server, parameters=True)["operations"][0]
    assert skipped["recovery"]["reversible"] == "unknown"  # this store holds no recovery facts of the database
    assert any("SkipFinalSnapshot" in why for why in skipped["recovery"]["why"])
    kept = decided(f"{line} --final-db-snapshot-identifier last", home, server, parameters=True)["operations"][0]
    assert kept["approval"]["id"] != skipped["approval"]["id"]  # other parameters: another request


def test_the_strictest_decision_of_every_operation_wins(home: Path, server: str) -> None:
    answer = decided("aws --profile sbx rds delete-db-instance --db-instance-identifier orders-db --region us-east-1 "
                     "&& bash -c 'aws --profile prod s3 rb s3://never-seen' ; ls", home, server)
    assert [o["decision"] for o in answer["operations"]] == ["allow", "deny"]
    assert answer["decision"] == "deny"


def test_what_is_not_understood_is_decided_by_its_scope(home: Path, server: str) -> None:
    unknown_db = "rds delete-db-instance --db-instance-identifier $DB"
    prod = decided(f"aws --profile prod {unknown_db}", home, server)
    assert prod["decision"] == "deny" and prod["operations"] == []
    (entry,) = prod["unparsed"]
    assert (entry["scope"], entry["decision"], entry["check"]["environment"]) == (PROD, "deny", "production")
    assert "computed" in entry["reason"]
    assert decided(f"aws --profile sbx {unknown_db}", home, server)["decision"] == "require_approval"
    nowhere = decided(f"aws --profile nope {unknown_db}", home, server)
    assert nowhere["decision"] == "require_approval" and nowhere["unparsed"][0]["check"] is None


def test_a_target_never_seen_is_decided_by_its_account_when_the_guard_would(home: Path, server: str) -> None:
    line = f"aws --profile sbx sns delete-topic --topic-arn arn:aws:sns:eu-west-1:{SANDBOX}:never-seen"
    (op,) = plan_command(line, context(home)).operations
    assert op.fallback == SANDBOX
    answer = decided(line, home, server)
    assert answer["decision"] == "allow"  # the sandbox account's strictest label, not production
    assert "never seen" in answer["operations"][0]["reasons"][0]


def test_nothing_to_check_is_allowed_without_asking(home: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: asking would raise UnreachableError
    with Client(dead) as client:
        answer = decide_command(plan_command("ls -la | grep foo; aws s3 ls", context(home)),
                                lambda op: client.check(op.target, op.action, op.contents))
    assert answer == {"decision": "allow", "operations": [], "unparsed": []}
    assert decide_command(plan_command("aws help", context(home)), _never) == answer


def _never(op: Operation) -> dict[str, Any]:
    raise AssertionError(f"asked about {op}")


def test_the_marker_survives_into_messages(home: Path) -> None:
    found = unparsed("aws --profile prod rds delete-db-instance --db-instance-identifier \"$(cat name)\"", home)
    assert "$(cat name)" in found.reason and unknown("x")[0] not in found.reason


# -- against the real AWS CLI's own argument tables -------------------------------------------------
#: services agents act on most, and those whose flags the CLI renames
CLI_SERVICES = ("rds", "ec2", "s3api", "lambda", "eks", "dynamodb", "iam", "sqs", "sns", "cloudformation", "ecs",
                "elbv2", "route53", "kms", "secretsmanager", "logs", "events", "emr", "deploy", "configservice",
                "apigateway", "stepfunctions", "schemas", "ses", "glue", "pinpoint", "swf", "sagemaker", "workdocs",
                "elasticache", "mturk", "cloudwatch")


def test_commands_and_flags_are_read_as_the_aws_cli_reads_them() -> None:
    """Every mutating command of these services, and every flag the installed awscli gives it, names the same
    botocore operation and input member here as in the CLI's own argument table."""
    clidriver = pytest.importorskip("awscli.clidriver")
    from envlabel.commands.aws import CLI_NAMES, CUSTOM, operation_of, service_model
    from envlabel.commands.aws_params import flag_of, flag_table
    from envlabel.guard.arns import is_checked

    commands = clidriver.create_clidriver()._get_command_table()
    differences, checked = [], 0
    for cli in CLI_SERVICES:
        service = CLI_NAMES.get(cli, cli)
        for name, command in commands[cli]._get_command_table().items():
            if type(command).__name__ != "ServiceOperation":
                continue  # a customization of the CLI's own (CUSTOM, or not understood)
            operation = operation_of(service, name)
            if operation != command._operation_model.name:
                differences += [] if (service, name) in CUSTOM else [(cli, name, operation)]
                continue
            if not is_checked(service, operation):
                continue
            model = service_model(service).operation_model(operation)
            table = flag_table(model, service, name)
            members = model.input_shape.members if model.input_shape is not None else {}
            checked += 1
            for flag, argument in command.arg_table.items():
                member = getattr(argument, "_serialized_name", None)
                if member in members and (flag_of(table, flag) or ("",))[0] != member:
                    differences.append((cli, name, flag))
    assert checked > 1500 and differences == []


def test_every_service_the_cli_offers_is_known() -> None:
    clidriver = pytest.importorskip("awscli.clidriver")
    from envlabel.commands.aws import CLI_NAMES, _loader

    available = set(_loader().list_available_services("service-2"))
    services = [name for name, command in clidriver.create_clidriver()._get_command_table().items()
                if type(command).__name__ == "ServiceCommand"]
    assert len(services) > 300
    assert [s for s in services if CLI_NAMES.get(s, s) not in available] == []


def test_a_target_the_check_refuses_is_denied(server: str) -> None:
    plan = CommandPlan(operations=[Operation("aws", "not a target", "rds:DeleteDBInstance", command="aws ...")])
    with Client(server) as client:
        answer = decide_command(plan, lambda op: client.check(op.target, op.action, op.contents))
    assert answer["decision"] == "deny" and answer["operations"] == []
    assert "cannot check rds:DeleteDBInstance on 'not a target'" in answer["unparsed"][0]["reason"]
