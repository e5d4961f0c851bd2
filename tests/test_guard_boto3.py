"""envlabel.guard.boto3: real boto3 clients against the moto server, checked by the real envlabel API
(uvicorn on loopback) over a real SQLite store holding labels for the resources moto holds."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from envlabel.client import Client
from envlabel.config import config_from_dict
from envlabel.errors import ActionDenied, ApprovalRequired, EnvlabelError, UnreachableError
from envlabel.guard.arns import Target, is_checked, targets_of
from envlabel.guard.boto3 import protect
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from tests.conftest import free_port
from tests.estates import scan_of

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "123456789012"  # the account moto gives the plain test credentials
REGION = "us-east-1"
A = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:"


# -- deriving targets (pure) -----------------------------------------------------------------------
@pytest.mark.parametrize(("service", "operation", "params", "expected"), [
    ("ec2", "TerminateInstances", {"InstanceIds": ["i-1", "i-2", "i-1"]},
     [A.format("ec2") + "instance/i-1", A.format("ec2") + "instance/i-2"]),
    ("rds", "DeleteDBInstance", {"DBInstanceIdentifier": "orders-db"}, [A.format("rds") + "db:orders-db"]),
    ("rds", "ModifyDBInstance", {"DBInstanceIdentifier": "orders-db"}, [A.format("rds") + "db:orders-db"]),
    ("rds", "DeleteDBCluster", {"DBClusterIdentifier": "aurora"}, [A.format("rds") + "cluster:aurora"]),
    ("rds", "CreateDBSnapshot", {"DBInstanceIdentifier": "orders-db", "DBSnapshotIdentifier": "s"},
     [A.format("rds") + "db:orders-db"]),
    ("s3", "DeleteBucket", {"Bucket": "exports"}, ["arn:aws:s3:::exports"]),
    ("s3", "DeleteObjects", {"Bucket": "exports", "Delete": {"Objects": []}}, ["arn:aws:s3:::exports"]),
    ("eks", "DeleteCluster", {"name": "orders"}, [A.format("eks") + "cluster/orders"]),
    ("eks", "DeleteNodegroup", {"clusterName": "orders", "nodegroupName": "ng"}, [A.format("eks") + "cluster/orders"]),
    ("lambda", "DeleteFunction", {"FunctionName": "worker"}, [A.format("lambda") + "function:worker"]),
    ("lambda", "DeleteFunction", {"FunctionName": "worker:live"}, [A.format("lambda") + "function:worker"]),
    ("lambda", "DeleteFunction", {"FunctionName": "222222222222:function:worker"},
     [f"arn:aws:lambda:{REGION}:222222222222:function:worker"]),
    ("lambda", "DeleteFunction", {"FunctionName": "arn:aws:lambda:eu-west-1:222222222222:function:worker:3"},
     ["arn:aws:lambda:eu-west-1:222222222222:function:worker"]),
    ("dynamodb", "DeleteTable", {"TableName": "sessions"}, [A.format("dynamodb") + "table/sessions"]),
    ("dynamodb", "DeleteTable", {"TableName": "arn:aws:dynamodb:us-east-1:222222222222:table/t"},
     ["arn:aws:dynamodb:us-east-1:222222222222:table/t"]),
    ("rds", "CreateDBInstance", {"DBInstanceIdentifier": "new-db"}, [ACCOUNT]),
    ("ec2", "RunInstances", {"ImageId": "ami-1", "SubnetId": "subnet-1"},
     [A.format("ec2") + "subnet/subnet-1", f"arn:aws:ec2:{REGION}::image/ami-1"]),
    ("ec2", "CreateSecurityGroup", {"GroupName": "g", "VpcId": "vpc-1"}, [A.format("ec2") + "vpc/vpc-1"]),
    ("ec2", "DeleteSecurityGroup", {"GroupId": "sg-1"}, [A.format("ec2") + "security-group/sg-1"]),
    ("ec2", "CreateTags", {"Resources": ["i-1", "ami-1", "vpc-1"], "Tags": []},
     [A.format("ec2") + "instance/i-1", ACCOUNT + "/*", A.format("ec2") + "vpc/vpc-1"]),
    ("s3", "CreateBucket", {"Bucket": "new-bucket"}, [ACCOUNT]),
    ("s3", "CreateMultipartUpload", {"Bucket": "exports", "Key": "k"}, ["arn:aws:s3:::exports"]),
    ("sqs", "PurgeQueue", {"QueueUrl": "https://sqs/q"}, [ACCOUNT + "/*"]),
])
def test_targets_come_from_the_parameters(service: str, operation: str, params: dict[str, Any],
                                          expected: list[str]) -> None:
    assert render(targets_of(service, operation, params, REGION, ACCOUNT)) == expected


def render(targets: list[Target]) -> list[str]:
    """Target ids; ``ACCOUNT/*`` is an account decided by the strictest label inside it (``contents``)."""
    return [t.id + ("/*" if t.contents else "") for t in targets]


P = "222222222222"  # another account


@pytest.mark.parametrize(("service", "operation", "params", "expected"), [
    # a resource of another account is checked in that account
    ("sns", "DeleteTopic", {"TopicArn": f"arn:aws:sns:{REGION}:{P}:t"}, [f"arn:aws:sns:{REGION}:{P}:t"]),
    ("sqs", "PurgeQueue", {"QueueUrl": f"https://sqs.eu-west-1.amazonaws.com/{P}/q"},
     [f"arn:aws:sqs:eu-west-1:{P}:q"]),
    ("sqs", "DeleteQueue", {"QueueUrl": f"http://127.0.0.1:5000/{P}/q.fifo"}, [f"arn:aws:sqs:{REGION}:{P}:q.fifo"]),
    ("ecr", "DeleteRepository", {"registryId": P, "repositoryName": "r"},
     [f"arn:aws:ecr:{REGION}:{P}:repository/r", P]),
    ("glue", "DeleteTable", {"CatalogId": P, "DatabaseName": "d", "Name": "t"},
     [f"arn:aws:glue:{REGION}:{P}:table/d/t", f"arn:aws:glue:{REGION}:{P}:catalog/{P}",
      f"arn:aws:glue:{REGION}:{P}:database/d", P]),
    ("sso-admin", "CreateAccountAssignment",
     {"InstanceArn": "arn:aws:sso:::instance/ssoins-1", "TargetId": P, "TargetType": "AWS_ACCOUNT",
      "PermissionSetArn": "arn:aws:sso:::permissionSet/ssoins-1/ps-1", "PrincipalType": "USER", "PrincipalId": "u"},
     # the assignment is also made in the caller's (management) account: a create there
     ["arn:aws:sso:::instance/ssoins-1", "arn:aws:sso:::permissionSet/ssoins-1/ps-1", ACCOUNT, P]),
    # nested values and lists are walked; AWS-owned ARNs are nobody's to change
    ("events", "PutTargets",
     {"Rule": "r", "Targets": [{"Id": "1", "Arn": f"arn:aws:lambda:{REGION}:{P}:function:f:1"}]},
     [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/r", f"arn:aws:lambda:{REGION}:{P}:function:f"]),
    ("iam", "AttachRolePolicy", {"RoleName": "r", "PolicyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
     [f"arn:aws:iam::{ACCOUNT}:role/r"]),
    # the generated table names the resource itself; Create* on an existing resource targets it
    ("ec2", "DeleteRouteTable", {"RouteTableId": "rtb-1"}, [A.format("ec2") + "route-table/rtb-1"]),
    ("ec2", "DeleteNetworkAcl", {"NetworkAclId": "acl-1"}, [A.format("ec2") + "network-acl/acl-1"]),
    ("ec2", "CreateRouteTable", {"VpcId": "vpc-1"}, [A.format("ec2") + "vpc/vpc-1"]),
    ("lambda", "CreateFunctionUrlConfig", {"FunctionName": "w", "AuthType": "NONE"},
     [A.format("lambda") + "function:w"]),
    ("rds", "CreateDBInstanceReadReplica", {"DBInstanceIdentifier": "new", "SourceDBInstanceIdentifier": "old"},
     [A.format("rds") + "db:old"]),
    # naming nothing: the strictest label in the account
    ("ec2", "DisassociateRouteTable", {"AssociationId": "rtbassoc-1"}, [ACCOUNT + "/*"]),
    # a create that names no container is checked against the account even when it passes an ARN: a sandbox
    # role must not let a cluster be created in a production account
    ("eks", "CreateCluster", {"name": "c", "roleArn": f"arn:aws:iam::{P}:role/sbx", "resourcesVpcConfig": {}},
     [f"arn:aws:iam::{P}:role/sbx", ACCOUNT]),
])
def test_every_resource_named_is_a_target_in_its_own_account(service: str, operation: str, params: dict[str, Any],
                                                              expected: list[str]) -> None:
    assert render(targets_of(service, operation, params, REGION, ACCOUNT)) == expected


def test_resources_the_scanner_may_not_know_fall_back_to_their_account() -> None:
    topic, bucket = targets_of("sns", "Publish", {"TopicArn": f"arn:aws:sns:{REGION}:{P}:t"}, REGION, ACCOUNT)[0], \
        targets_of("s3", "DeleteBucket", {"Bucket": "b"}, REGION, ACCOUNT)[0]
    assert (topic.fallback, bucket.fallback) == (P, None)  # buckets are listed completely: never seen = gone


def test_regenerating_the_target_table_changes_nothing() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "aws_targets.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_partitions_follow_the_region() -> None:
    assert render(targets_of("rds", "DeleteDBInstance", {"DBInstanceIdentifier": "d"}, "cn-north-1", ACCOUNT)) == [
        f"arn:aws-cn:rds:cn-north-1:{ACCOUNT}:db:d"]


def test_reads_and_credential_calls_are_not_checked() -> None:
    assert not is_checked("ec2", "DescribeInstances")
    assert not is_checked("s3", "ListObjectsV2")
    assert not is_checked("sts", "AssumeRole")
    assert not is_checked("sso", "GetRoleCredentials")
    assert not is_checked("sso-oidc", "CreateToken")
    assert is_checked("sso-admin", "CreatePermissionSet")  # signing name "sso", but not a credential call
    assert is_checked("rds", "DeleteDBInstance")
    assert is_checked("sqs", "PurgeQueue")


# -- guarded calls against moto -------------------------------------------------------------------
@dataclass
class Estate:
    """moto resources in one account, each labeled by its own Environment tag in the store."""

    moto: str
    envlabel: str
    instances: dict[str, str]  # environment -> instance id


def session() -> Any:
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


_SHARED = session()  # loads each service model once for the module; its clients are protected one by one


def unguarded(estate: Estate, service: str) -> Any:
    return _SHARED.client(service, endpoint_url=estate.moto)


def build_moto(moto: str) -> dict[str, str]:
    s = _SHARED
    rds = s.client("rds", endpoint_url=moto)
    for name in ("orders-db", "reports-db", "scratch-db"):
        rds.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
                               MasterUsername="admin", MasterUserPassword="not-a-secret-1", AllocatedStorage=20)
    s3 = s.client("s3", endpoint_url=moto)
    for bucket in ("prod-exports", "scratch-exports"):
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="a.csv", Body=b"1")
    ec2 = s.client("ec2", endpoint_url=moto)
    ids = [i["InstanceId"] for i in ec2.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2)["Instances"]]
    return {"sandbox": ids[0], "staging": ids[1]}


def fresh_moto(moto_url: str) -> str:
    with urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10):
        return moto_url


def labeled(arn: str, environment: str) -> Resource:
    kind = arn.split(":")[2]
    return Resource(arn, "aws", kind, arn.rpartition(":")[2], ACCOUNT, {"Environment": environment},
                    f"{ACCOUNT}/{REGION}")


@pytest.fixture(scope="module")
def estate(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    """Built once for the module: tests only delete what no other test looks at."""
    moto = fresh_moto(moto_url)
    instances = build_moto(moto)
    # the account carries no signal: anything checked against it alone is decided as production
    resources = [Resource(ACCOUNT, "aws", "aws:account", "test", None, {}, "org")] + [
        labeled(arn, env) for arn, env in (
            (A.format("rds") + "db:orders-db", "production"),
            (A.format("rds") + "db:reports-db", "staging"),
            (A.format("rds") + "cluster:orders-aurora", "production"),
            ("arn:aws:s3:::prod-exports", "production"),
            ("arn:aws:s3:::scratch-exports", "sandbox"),
            (A.format("eks") + "cluster/orders", "production"),
            (A.format("lambda") + "function:orders-worker", "production"),
            (A.format("dynamodb") + "table/orders-sessions", "production"),
            *((A.format("ec2") + f"instance/{i}", env) for env, i in instances.items()),
        )]
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('guard') / 'envlabel.db'}")
    now = utcnow()
    commit_scan(store, Taxonomy(), scan_of(resources), now, now)
    with BackgroundServer(config_from_dict({}), store) as server:
        yield Estate(moto, server.url, instances)


def guarded(estate: Estate, service: str, envlabel: Client | None = None) -> Any:
    client = unguarded(estate, service)
    protect(client, envlabel or Client(estate.envlabel))
    return client


def db_names(moto: str) -> set[str]:
    rds = _SHARED.client("rds", endpoint_url=moto)
    return {d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]}


def instance_states(moto: str) -> dict[str, str]:
    ec2 = _SHARED.client("ec2", endpoint_url=moto)
    return {i["InstanceId"]: i["State"]["Name"]
            for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]}


def test_deleting_a_production_database_is_denied_before_the_request(estate: Estate) -> None:
    rds = guarded(estate, "rds")
    with pytest.raises(ActionDenied) as caught:
        rds.delete_db_instance(DBInstanceIdentifier="orders-db", SkipFinalSnapshot=True)
    check = caught.value.check
    assert (check["target"], check["action"], check["environment"]) == (
        A.format("rds") + "db:orders-db", "rds:DeleteDBInstance", "production")
    assert check["label"]["evidence"][0]["detail"].startswith("tag Environment=production")
    assert "orders-db" in db_names(estate.moto)


def test_modify_needs_approval_in_production_and_passes_in_staging(estate: Estate) -> None:
    rds = guarded(estate, "rds")
    with pytest.raises(ApprovalRequired):
        rds.modify_db_instance(DBInstanceIdentifier="orders-db", AllocatedStorage=50, ApplyImmediately=True)
    changed = rds.modify_db_instance(DBInstanceIdentifier="reports-db", AllocatedStorage=50, ApplyImmediately=True)
    assert changed["DBInstance"]["DBInstanceIdentifier"] == "reports-db"


def test_several_instances_the_strictest_decides(estate: Estate) -> None:
    ec2 = guarded(estate, "ec2")
    sandbox, staging = estate.instances["sandbox"], estate.instances["staging"]
    before = instance_states(estate.moto)
    with pytest.raises(ApprovalRequired) as caught:
        ec2.terminate_instances(InstanceIds=[sandbox, staging])
    assert caught.value.check["target"].endswith(staging)
    assert instance_states(estate.moto) == before == {sandbox: "running", staging: "running"}
    ec2.terminate_instances(InstanceIds=[sandbox])
    assert instance_states(estate.moto)[sandbox] in ("shutting-down", "terminated")


def test_s3_bucket_and_objects_by_bucket_arn(estate: Estate) -> None:
    s3 = guarded(estate, "s3")
    s3.delete_objects(Bucket="scratch-exports", Delete={"Objects": [{"Key": "a.csv"}]})
    assert s3.list_objects_v2(Bucket="scratch-exports")["KeyCount"] == 0
    with pytest.raises(ActionDenied) as caught:
        s3.delete_bucket(Bucket="prod-exports")
    assert caught.value.check["target"] == "arn:aws:s3:::prod-exports"
    assert s3.list_objects_v2(Bucket="prod-exports")["KeyCount"] == 1


@pytest.mark.parametrize(("service", "method", "kwargs", "target"), [
    ("rds", "delete_db_cluster", {"DBClusterIdentifier": "orders-aurora", "SkipFinalSnapshot": True},
     A.format("rds") + "cluster:orders-aurora"),
    ("eks", "delete_cluster", {"name": "orders"}, A.format("eks") + "cluster/orders"),
    ("lambda", "delete_function", {"FunctionName": "orders-worker"}, A.format("lambda") + "function:orders-worker"),
    ("dynamodb", "delete_table", {"TableName": "orders-sessions"}, A.format("dynamodb") + "table/orders-sessions"),
])
def test_production_deletes_across_services_are_denied(estate: Estate, service: str, method: str,
                                                       kwargs: dict[str, Any], target: str) -> None:
    client = guarded(estate, service)
    with pytest.raises(ActionDenied) as caught:
        getattr(client, method)(**kwargs)
    assert (caught.value.check["target"], caught.value.check["environment"]) == (target, "production")
    assert caught.value.check["label"]["found"] is True


def test_an_operation_naming_nothing_known_is_checked_against_the_account(estate: Estate) -> None:
    sqs = guarded(estate, "sqs")
    with pytest.raises(ActionDenied) as caught:  # the account has no signal: decided as production
        sqs.purge_queue(QueueUrl=f"{estate.moto}/{ACCOUNT}/orders-events")
    assert caught.value.check["target"] == ACCOUNT


def test_creating_is_checked_against_the_account(estate: Estate) -> None:
    rds = guarded(estate, "rds")
    with pytest.raises(ApprovalRequired) as caught:
        rds.create_db_instance(DBInstanceIdentifier="new-db", DBInstanceClass="db.t3.micro", Engine="postgres")
    assert caught.value.check["target"] == ACCOUNT
    assert "new-db" not in db_names(estate.moto)


def test_reads_and_assume_role_are_not_checked_and_an_unreachable_envlabel_blocks_writes(estate: Estate) -> None:
    dead = Client(f"http://127.0.0.1:{free_port()}")
    rds = guarded(estate, "rds", dead)
    assert "orders-db" in {d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]}
    sts = guarded(estate, "sts", dead)
    assert sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/x", RoleSessionName="agent")["Credentials"]
    with pytest.raises(UnreachableError, match="envlabel serve"):
        rds.delete_db_instance(DBInstanceIdentifier="orders-db", SkipFinalSnapshot=True)
    assert "orders-db" in db_names(estate.moto)


def test_fail_open_lets_calls_through_while_envlabel_is_unreachable(
        estate: Estate, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    rds = guarded(estate, "rds", Client(f"http://127.0.0.1:{free_port()}"))
    monkeypatch.setenv("ENVLABEL_FAIL_OPEN", "1")
    rds.delete_db_instance(DBInstanceIdentifier="scratch-db", SkipFinalSnapshot=True)
    assert "scratch-db" not in db_names(estate.moto)
    assert "ENVLABEL_FAIL_OPEN" in caplog.text


def test_a_session_guards_the_clients_it_creates_afterwards(estate: Estate) -> None:
    s = session()
    protect(s, Client(estate.envlabel))
    for service in ("rds", "s3"):
        client = s.client(service, endpoint_url=estate.moto)
        with pytest.raises(ActionDenied):
            if service == "rds":
                client.delete_db_instance(DBInstanceIdentifier="orders-db", SkipFinalSnapshot=True)
            else:
                client.delete_bucket(Bucket="prod-exports")
    assert "orders-db" in db_names(estate.moto)


def test_a_resource_is_guarded_through_its_client_and_nonsense_is_refused(estate: Estate) -> None:
    bucket = _SHARED.resource("s3", endpoint_url=estate.moto).Bucket("prod-exports")
    protect(bucket, Client(estate.envlabel))
    with pytest.raises(ActionDenied):
        bucket.delete()
    with pytest.raises(TypeError, match="boto3 Session"):
        protect("rds", Client(estate.envlabel))


def test_the_default_session_can_be_protected(estate: Estate, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a fresh default session, restored afterwards
    protect(None, Client(estate.envlabel))
    with pytest.raises(ActionDenied):
        boto3.client("rds", endpoint_url=estate.moto).delete_db_instance(DBInstanceIdentifier="orders-db")
    assert "orders-db" in db_names(estate.moto)


def test_protecting_again_replaces_the_guard(estate: Estate) -> None:
    rds = guarded(estate, "rds", Client(f"http://127.0.0.1:{free_port()}"))
    protect(rds, Client(estate.envlabel))
    with pytest.raises(ApprovalRequired):  # an answer from the second envlabel, not the unreachable first
        rds.delete_db_instance(DBInstanceIdentifier="reports-db", SkipFinalSnapshot=True)


def test_the_account_is_learned_once_per_access_key(estate: Estate) -> None:
    guarded(estate, "rds").modify_db_instance(DBInstanceIdentifier="reports-db", ApplyImmediately=True)
    # Same key, but STS (the client's endpoint) now unreachable: the remembered account still names the target.
    dead = f"http://127.0.0.1:{free_port()}"
    offline = _SHARED.client("rds", endpoint_url=dead)
    protect(offline, Client(estate.envlabel))
    with pytest.raises(ActionDenied) as caught:
        offline.delete_db_instance(DBInstanceIdentifier="orders-db", SkipFinalSnapshot=True)
    assert caught.value.check["target"] == A.format("rds") + "db:orders-db"
    # A key never seen, and no STS to ask: the guard cannot attribute the call, so it blocks it.
    stranger = boto3.Session(aws_access_key_id="AKIDNEVERSEEN", aws_secret_access_key="x", region_name=REGION)
    unattributed = stranger.client("rds", endpoint_url=dead)
    protect(unattributed, Client(estate.envlabel))
    with pytest.raises(EnvlabelError, match="could not learn the AWS account"):
        unattributed.delete_db_instance(DBInstanceIdentifier="orders-db", SkipFinalSnapshot=True)
