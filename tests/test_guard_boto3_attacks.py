"""The attacks that got through the boto3 guard, replayed over real sockets: real boto3 clients against the moto
server, checked by the real envlabel API (uvicorn on loopback) over a real SQLite store. Each shows the
production object still exists afterwards.

The caller's account (moto's 123456789012) is labeled sandbox; inside it a route table, a network ACL and a
Lambda function carry their own Environment=production tag. Account 222222222222 is production and holds an
SNS topic envlabel never saw.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from envlabel.client import Client
from envlabel.config import config_from_dict
from envlabel.errors import ActionDenied, ApprovalRequired, Blocked, EnvlabelError, UnreachableError
from envlabel.guard.boto3 import protect
from envlabel.labelers.taxonomy import Taxonomy
from envlabel.model import Resource
from envlabel.service.core.clock import utcnow
from envlabel.service.core.pipeline import commit_scan
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from tests.estates import scan_of

ACCOUNT = "123456789012"  # the caller: sandbox
PROD = "222222222222"
EMPTY_SANDBOX = "333333333333"  # a sandbox account holding nothing stricter
REGION = "us-east-1"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


@dataclass
class World:
    moto: str
    envlabel: str
    route_table: str
    network_acl: str
    association: str
    topic: str
    prod: Any  # a boto3 Session acting in the production account


def session() -> Any:
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


_SHARED = session()


def ec2_arn(kind: str, ident: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:ec2:{REGION}:{account}:{kind}/{ident}"


def labeled(arn: str, kind: str, environment: str) -> Resource:
    return Resource(arn, "aws", kind, arn.rpartition(":")[2], ACCOUNT, {"Environment": environment},
                    f"{ACCOUNT}/{REGION}")


def build(moto: str) -> tuple[str, str, str, str, Any]:
    ec2 = _SHARED.client("ec2", endpoint_url=moto)
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    route_table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    association = ec2.associate_route_table(RouteTableId=route_table, SubnetId=subnet)["AssociationId"]
    network_acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
    role = _SHARED.client("iam", endpoint_url=moto).create_role(
        RoleName="worker", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return 1\n")
    _SHARED.client("lambda", endpoint_url=moto).create_function(
        FunctionName="orders-worker", Runtime="python3.12", Role=role, Handler="index.handler",
        Code={"ZipFile": code.getvalue()})
    s3 = _SHARED.client("s3", endpoint_url=moto)
    for bucket in ("prod-exports", "scratch-exports"):
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="a.csv", Body=b"1")
    creds = _SHARED.client("sts", endpoint_url=moto).assume_role(
        RoleArn=f"arn:aws:iam::{PROD}:role/admin", RoleSessionName="setup")["Credentials"]
    prod = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"], region_name=REGION)
    topic = prod.client("sns", endpoint_url=moto).create_topic(Name="orders-events")["TopicArn"]
    return route_table, network_acl, association, topic, prod


@pytest.fixture(scope="module")
def world(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10):
        pass
    route_table, network_acl, association, topic, prod = build(moto_url)
    resources = [
        Resource(ACCOUNT, "aws", "aws:account", "sandbox", None, {"Environment": "sandbox"}, "org"),
        Resource(PROD, "aws", "aws:account", "prod", None, {"Environment": "production"}, "org"),
        Resource(EMPTY_SANDBOX, "aws", "aws:account", "playground", None, {"Environment": "sandbox"}, "org"),
        labeled(ec2_arn("route-table", route_table), "ec2:route-table", "production"),
        labeled(ec2_arn("network-acl", network_acl), "ec2:network-acl", "production"),
        labeled(f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders-worker", "lambda:function", "production"),
        labeled("arn:aws:s3:::prod-exports", "s3:bucket", "production"),
        labeled("arn:aws:s3:::scratch-exports", "s3:bucket", "sandbox"),
    ]
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('attacks') / 'envlabel.db'}")
    now = utcnow()
    commit_scan(store, Taxonomy(), scan_of(resources), now, now)
    with BackgroundServer(config_from_dict({}), store) as server:
        yield World(moto_url, server.url, route_table, network_acl, association, topic, prod)


def guarded(world: World, service: str, envlabel: Client | None = None) -> Any:
    client = _SHARED.client(service, endpoint_url=world.moto)
    protect(client, envlabel or Client(world.envlabel))
    return client


def plain(world: World, service: str) -> Any:
    return _SHARED.client(service, endpoint_url=world.moto)


# -- sso-admin is not a credential call ----------------------------------------------------------------
def test_sso_admin_cannot_create_or_assign_a_permission_set_unchecked(world: World) -> None:
    sso = guarded(world, "sso-admin")
    instance = "arn:aws:sso:::instance/ssoins-1111111111111111"
    assert sso.meta.service_model.signing_name == "sso"  # the name the old exemption matched
    with pytest.raises(Blocked) as caught:
        sso.create_permission_set(InstanceArn=instance, Name="everything")
    assert caught.value.check["action"] == "sso-admin:CreatePermissionSet"
    with pytest.raises(Blocked) as assigned:
        sso.create_account_assignment(
            InstanceArn=instance, TargetId=PROD, TargetType="AWS_ACCOUNT",
            PermissionSetArn=f"arn:aws:sso:::permissionSet/{instance.rpartition('/')[2]}/ps-1111111111111111",
            PrincipalType="USER", PrincipalId="agent")
    assert assigned.value.check["environment"] == "production"
    assert plain(world, "sso-admin").list_permission_sets(InstanceArn=instance)["PermissionSets"] == []
    # credential calls stay exempt, even with envlabel unreachable
    sts = guarded(world, "sts", Client("http://127.0.0.1:9"))
    assert sts.get_caller_identity()["Account"] == ACCOUNT


# -- presigned URLs and posts --------------------------------------------------------------------------
def test_presigned_deletes_and_uploads_on_production_are_refused_before_signing(world: World) -> None:
    s3 = guarded(world, "s3")
    with pytest.raises(ActionDenied) as caught:
        s3.generate_presigned_url("delete_object", Params={"Bucket": "prod-exports", "Key": "a.csv"})
    assert (caught.value.check["action"], caught.value.check["target"]) == ("s3:DeleteObject",
                                                                            "arn:aws:s3:::prod-exports")
    with pytest.raises(ActionDenied):  # a read's URL signed for DELETE deletes
        s3.generate_presigned_url("get_object", Params={"Bucket": "prod-exports", "Key": "a.csv"},
                                  HttpMethod="DELETE")
    with pytest.raises(ApprovalRequired):  # a post policy overwrites the object
        s3.generate_presigned_post(Bucket="prod-exports", Key="a.csv")
    assert plain(world, "s3").get_object(Bucket="prod-exports", Key="a.csv")["Body"].read() == b"1"
    # reads presign freely, and a sandbox object's presigned DELETE is signed and works over the wire
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "prod-exports", "Key": "a.csv"})
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"1"
    url = s3.generate_presigned_url("delete_object", Params={"Bucket": "scratch-exports", "Key": "a.csv"})
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10):
        pass
    assert plain(world, "s3").list_objects_v2(Bucket="scratch-exports")["KeyCount"] == 0


# -- a resource of another account ---------------------------------------------------------------------
def test_a_sandbox_caller_cannot_delete_a_production_accounts_topic(world: World) -> None:
    sns = guarded(world, "sns")
    with pytest.raises(ActionDenied) as caught:
        sns.delete_topic(TopicArn=world.topic)
    # the topic was never scanned: decided by its own account, production, not by the caller's sandbox
    assert caught.value.check["environment"] == "production"
    assert caught.value.check["target"] in (world.topic, PROD)
    topics = world.prod.client("sns", endpoint_url=world.moto).list_topics()["Topics"]
    assert world.topic in [t["TopicArn"] for t in topics]


# -- a production-tagged resource inside a sandbox account ---------------------------------------------
def test_production_route_table_and_network_acl_in_a_sandbox_account_are_kept(world: World) -> None:
    ec2 = guarded(world, "ec2")
    with pytest.raises(ActionDenied) as route:
        ec2.delete_route_table(RouteTableId=world.route_table)
    assert route.value.check["target"] == ec2_arn("route-table", world.route_table)
    with pytest.raises(ActionDenied):
        ec2.delete_network_acl(NetworkAclId=world.network_acl)
    raw = plain(world, "ec2")
    assert raw.describe_route_tables(RouteTableIds=[world.route_table])["RouteTables"]
    assert raw.describe_network_acls(NetworkAclIds=[world.network_acl])["NetworkAcls"]


def test_the_production_lambda_gets_no_public_url(world: World) -> None:
    lam = guarded(world, "lambda")
    with pytest.raises(ApprovalRequired) as caught:
        lam.create_function_url_config(FunctionName="orders-worker", AuthType="NONE")
    assert caught.value.check["target"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders-worker"
    with pytest.raises(Blocked):
        lam.add_permission(FunctionName="orders-worker", StatementId="public", Action="lambda:InvokeFunctionUrl",
                           Principal="*", FunctionUrlAuthType="NONE")
    raw = plain(world, "lambda")
    with pytest.raises(raw.exceptions.ResourceNotFoundException):
        raw.get_function_url_config(FunctionName="orders-worker")


def test_a_sandbox_role_does_not_let_a_cluster_be_created_in_the_production_account(world: World) -> None:
    """A Create* that names no container of its own is checked against the account it runs in, whatever ARNs
    it passes: here a role of an empty sandbox account, which once stood in for the production account."""
    eks = world.prod.client("eks", endpoint_url=world.moto)
    protect(eks, Client(world.envlabel))
    with pytest.raises(ApprovalRequired) as caught:
        eks.create_cluster(name="rogue", roleArn=f"arn:aws:iam::{EMPTY_SANDBOX}:role/sbx",
                           resourcesVpcConfig={"subnetIds": []})
    assert caught.value.check["environment"] == "production"
    assert "rogue" not in world.prod.client("eks", endpoint_url=world.moto).list_clusters()["clusters"]


def test_creating_in_the_sandbox_account_is_still_allowed(world: World) -> None:
    guarded(world, "s3").create_bucket(Bucket="sandbox-new")
    assert "sandbox-new" in [b["Name"] for b in plain(world, "s3").list_buckets()["Buckets"]]


# -- an operation naming nothing: the strictest label in the account -----------------------------------
def test_an_unmapped_change_in_a_sandbox_account_is_decided_by_its_strictest_resource(world: World) -> None:
    ec2 = guarded(world, "ec2")
    with pytest.raises(Blocked) as caught:
        ec2.disassociate_route_table(AssociationId=world.association)
    assert (caught.value.check["target"], caught.value.check["environment"]) == (ACCOUNT, "production")
    tables = plain(world, "ec2").describe_route_tables(RouteTableIds=[world.route_table])["RouteTables"]
    assert world.association in [a["RouteTableAssociationId"] for a in tables[0]["Associations"]]


# -- one deadline, whatever the server does (the trickler is in conftest.py) -------------------------
@pytest.mark.timeout(60)
def test_a_trickling_envlabel_cannot_hold_a_guarded_call_past_the_deadline(
        world: World, trickler: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVLABEL_TIMEOUT", "1")
    ec2 = guarded(world, "ec2", Client(trickler))
    with pytest.raises(UnreachableError, match="deadline"):
        ec2.delete_route_table(RouteTableId=world.route_table)
    assert plain(world, "ec2").describe_route_tables(RouteTableIds=[world.route_table])["RouteTables"]


def test_a_malformed_answer_is_an_envlabel_error(world: World) -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 6\r\n"
                         b"Connection: close\r\n\r\n[1, 2]")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    ec2 = guarded(world, "ec2", Client(f"http://127.0.0.1:{listener.getsockname()[1]}"))
    with pytest.raises(EnvlabelError, match="expected"):
        ec2.delete_network_acl(NetworkAclId=world.network_acl)
    thread.join(timeout=10)
    listener.close()
    assert plain(world, "ec2").describe_network_acls(NetworkAclIds=[world.network_acl])["NetworkAcls"]
