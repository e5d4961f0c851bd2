"""A realistic AWS Organization built in a moto server: ``build_estate(endpoint_url) -> EstateInfo``.

Everything an AWS estate gets wrong is here: nested OUs whose names (not
tags) declare the environment, messy tag keys and values (Environment=Prod-EU,
env=prd, Stage=UAT, ENV=dev, Environment=nonprod), a tag that contradicts its
place (an RDS tagged sandbox in a production account), an account with no
signal at all, and a production/staging twin with identical resource names.

Member-account resources are created through credentials from sts.assume_role
into that account, because moto keys resources by the caller's account.
"""

from __future__ import annotations

import io
import json
import urllib.request
import zipfile
from dataclasses import dataclass, field
from typing import Any

import boto3

from envlabel.discovery.aws import Credentials, SessionFactory, make_sessions

MANAGEMENT = "123456789012"  # moto's default account: the one the plain test credentials act as
ROLE = "EnvlabelReadOnly"
REGIONS = ("us-east-1", "eu-west-1")
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})

#: OU path -> the OU's tags (an empty dict: only its name speaks)
OUS: dict[str, dict[str, str]] = {
    "/Root/Production": {},
    "/Root/Production/EU": {"Environment": "Prod-EU"},
    "/Root/Staging": {},
    "/Root/Sandbox": {"owner": "platform"},
    "/Root/Shared": {"CostCenter": "platform"},
}
#: account name -> (OU path, the account's tags)
ACCOUNTS: dict[str, tuple[str, dict[str, str]]] = {
    "orders-prod": ("/Root/Production", {"env": "prd"}),
    "payments-eu": ("/Root/Production/EU", {}),
    "orders-staging": ("/Root/Staging", {"Stage": "UAT"}),
    "dev-playground": ("/Root/Sandbox", {"ENV": "dev"}),
    "shared-services": ("/Root/Shared", {"Environment": "nonprod"}),
    "legacy-7": ("/Root", {}),  # no signal at all: its label must be unknown
}


@dataclass
class EstateInfo:
    endpoint_url: str
    management: str
    root: str
    #: account name -> 12-digit id (the management account is "management")
    accounts: dict[str, str] = field(default_factory=dict)
    #: OU path -> OU ARN
    ous: dict[str, str] = field(default_factory=dict)
    #: "account-name/resource-name" -> ARN of notable resources
    arns: dict[str, str] = field(default_factory=dict)
    regions: tuple[str, ...] = REGIONS
    role: str = ROLE

    def source(self, **overrides: Any) -> dict[str, Any]:
        """An AWS source config block for this estate."""
        return {"name": "aws", "type": "aws", "endpoint_url": self.endpoint_url, "regions": list(self.regions),
                "organization": True, "assume_role": self.role, **overrides}


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


class _Account:
    """Clients acting inside one account."""

    def __init__(self, endpoint_url: str, account: str, session: boto3.Session, info: EstateInfo, name: str) -> None:
        self.endpoint_url = endpoint_url
        self.id = account
        self.session = session
        self.info = info
        self.name = name
        self._clients: dict[tuple[str, str], Any] = {}

    def client(self, service: str, region: str = "us-east-1") -> Any:
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = self.session.client(  # type: ignore[call-overload]
                service, region_name=region, endpoint_url=self.endpoint_url)
        return self._clients[key]

    def note(self, name: str, arn: str) -> str:
        self.info.arns[f"{self.name}/{name}"] = arn
        return arn

    def vpc(self, region: str, name: str, cidr: str, tags: dict[str, str] | None = None) -> tuple[str, list[str], str]:
        """A VPC with two subnets and a security group; returns (vpc id, subnet ids, sg id)."""
        ec2 = self.client("ec2", region)
        vpc_id = ec2.create_vpc(CidrBlock=cidr, TagSpecifications=[{"ResourceType": "vpc", "Tags": _tags(
            {"Name": name, **(tags or {})})}])["Vpc"]["VpcId"]
        self.note(name, f"arn:aws:ec2:{region}:{self.id}:vpc/{vpc_id}")
        base = cidr.rsplit(".", 2)[0]
        subnets = [ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"{base}.{i}.0/24", AvailabilityZone=f"{region}{az}",
                                     TagSpecifications=[{"ResourceType": "subnet", "Tags": _tags(
                                         {"Name": f"{name}-{az}"})}])["Subnet"]["SubnetId"]
                   for i, az in enumerate("ab")]
        sg = ec2.create_security_group(GroupName=f"{name}-sg", Description="app", VpcId=vpc_id)["GroupId"]
        self.note(f"{name}-sg", f"arn:aws:ec2:{region}:{self.id}:security-group/{sg}")
        return vpc_id, subnets, sg

    def instance(self, region: str, name: str, tags: dict[str, str], subnet: str | None = None) -> str:
        params: dict[str, Any] = {"SubnetId": subnet} if subnet else {}
        instance_id = self.client("ec2", region).run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.micro",
            TagSpecifications=[{"ResourceType": "instance", "Tags": _tags({"Name": name, **tags})}],
            **params)["Instances"][0]["InstanceId"]
        return self.note(name, f"arn:aws:ec2:{region}:{self.id}:instance/{instance_id}")

    def database(self, region: str, name: str, subnets: list[str], tags: dict[str, str]) -> str:
        rds = self.client("rds", region)
        rds.create_db_subnet_group(DBSubnetGroupName=f"{name}-subnets", DBSubnetGroupDescription=name,
                                   SubnetIds=subnets)
        db = rds.create_db_instance(DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
                                    MasterUsername="admin", MasterUserPassword="not-a-secret-1",
                                    AllocatedStorage=20, DBSubnetGroupName=f"{name}-subnets", Tags=_tags(tags))
        return self.note(name, db["DBInstance"]["DBInstanceArn"])

    def db_cluster(self, region: str, name: str, tags: dict[str, str]) -> str:
        cluster = self.client("rds", region).create_db_cluster(
            DBClusterIdentifier=name, Engine="aurora-postgresql", MasterUsername="admin",
            MasterUserPassword="not-a-secret-1", Tags=_tags(tags))
        return self.note(name, cluster["DBCluster"]["DBClusterArn"])

    def eks(self, region: str, name: str, subnets: list[str], tags: dict[str, str]) -> str:
        cluster = self.client("eks", region).create_cluster(
            name=name, roleArn=f"arn:aws:iam::{self.id}:role/eks", tags=tags,
            resourcesVpcConfig={"subnetIds": subnets})
        return self.note(name, cluster["cluster"]["arn"])

    def function(self, region: str, name: str, tags: dict[str, str], subnets: list[str] | None = None,
                 sg: str | None = None) -> str:
        iam = self.client("iam")
        try:
            role = iam.get_role(RoleName="lambda-exec")["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            role = iam.create_role(RoleName="lambda-exec", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
        params: dict[str, Any] = {"Tags": tags} if tags else {}
        if subnets and sg:
            params["VpcConfig"] = {"SubnetIds": subnets, "SecurityGroupIds": [sg]}
        fn = self.client("lambda", region).create_function(
            FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handler",
            Code={"ZipFile": code.getvalue()}, **params)
        return self.note(name, fn["FunctionArn"])

    def table(self, region: str, name: str, tags: dict[str, str]) -> str:
        params: dict[str, Any] = {"Tags": _tags(tags)} if tags else {}
        table = self.client("dynamodb", region).create_table(
            TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
            **params)
        return self.note(name, table["TableDescription"]["TableArn"])

    def bucket(self, name: str, tags: dict[str, str], region: str = "us-east-1") -> str:
        s3 = self.client("s3", region)
        config = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=name, **config)
        if tags:
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags(tags)})
        return self.note(name, f"arn:aws:s3:::{name}")

    def queue(self, region: str, name: str, tags: dict[str, str]) -> str:
        sqs = self.client("sqs", region)
        sqs.create_queue(QueueName=name, tags=tags)
        return self.note(name, f"arn:aws:sqs:{region}:{self.id}:{name}")


def build_organization(mgmt: _Account, info: EstateInfo) -> None:
    org = mgmt.client("organizations")
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]
    info.root = root["Arn"]
    ids = {"/Root": root["Id"]}
    for path, tags in OUS.items():
        parent, _, name = path.rpartition("/")
        ou = org.create_organizational_unit(ParentId=ids[parent], Name=name, Tags=_tags(tags))
        ids[path] = ou["OrganizationalUnit"]["Id"]
        info.ous[path] = ou["OrganizationalUnit"]["Arn"]
    org.tag_resource(ResourceId=info.management, Tags=_tags({"Environment": "production"}))
    for name, (path, tags) in ACCOUNTS.items():
        status = org.create_account(Email=f"{name}@example.com", AccountName=name, Tags=_tags(tags))
        account = status["CreateAccountStatus"]["AccountId"]
        info.accounts[name] = account
        if path != "/Root":
            org.move_account(AccountId=account, SourceParentId=root["Id"], DestinationParentId=ids[path])


def member(mgmt: _Account, info: EstateInfo, name: str, sessions: SessionFactory) -> _Account:
    """Act inside a member account the way the scanner will: through the role."""
    account = info.accounts[name]
    creds = mgmt.client("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/{ROLE}",
                                           RoleSessionName="estate")["Credentials"]
    session = sessions(Credentials(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]))
    return _Account(mgmt.endpoint_url, account, session, info, name)


def build_estate(endpoint_url: str) -> EstateInfo:
    """Build the organization and its resources in an empty moto server; returns the ids to assert on."""
    info = EstateInfo(endpoint_url, MANAGEMENT, "")
    info.accounts["management"] = MANAGEMENT
    sessions = make_sessions()
    mgmt = _Account(endpoint_url, MANAGEMENT, sessions(None), info, "management")
    build_organization(mgmt, info)
    e = "us-east-1"

    mgmt.bucket("org-audit-trail", {"Name": "audit trail"})

    prod = member(mgmt, info, "orders-prod", sessions)
    _, subnets, sg = prod.vpc(e, "orders-prod-vpc", "10.1.0.0/16")
    prod.instance(e, "orders-api", {"team": "orders"}, subnets[0])
    prod.database(e, "orders-db", subnets, {"Environment": "sandbox"})  # contradicts its production account
    prod.db_cluster(e, "orders-aurora", {})
    prod.eks(e, "orders", subnets, {"env": "prod"})
    prod.function(e, "orders-worker", {"team": "orders"}, subnets, sg)
    prod.table(e, "orders-sessions", {})
    prod.bucket("orders-prod-assets", {"Environment": "Production"})
    prod.instance("eu-west-1", "orders-api-eu", {})

    payments = member(mgmt, info, "payments-eu", sessions)
    _, pay_subnets, _ = payments.vpc("eu-west-1", "payments-vpc", "10.2.0.0/16")
    payments.instance("eu-west-1", "payments-api", {}, pay_subnets[0])
    payments.table("eu-west-1", "payments-ledger", {"env": "prd-eu"})
    payments.queue("eu-west-1", "payments-events", {"env": "prod"})

    staging = member(mgmt, info, "orders-staging", sessions)
    _, stg_subnets, _ = staging.vpc(e, "orders-staging-vpc", "10.3.0.0/16")
    staging.instance(e, "orders-api", {"team": "orders"}, stg_subnets[0])  # the twin: same names as production
    staging.database(e, "orders-db", stg_subnets, {})
    staging.eks(e, "orders", stg_subnets, {"Stage": "staging"})
    staging.bucket("orders-staging-assets", {})

    dev = member(mgmt, info, "dev-playground", sessions)
    dev.instance(e, "scratch-box", {"ENV": "dev"})
    dev.function(e, "scratch", {"env": "test"})
    dev.table(e, "scratch-table", {"env": "test"})
    dev.bucket("dev-playground-eu", {"owner": "someone"}, region="eu-west-1")

    shared = member(mgmt, info, "shared-services", sessions)
    _, shared_subnets, _ = shared.vpc(e, "shared-vpc", "10.4.0.0/16", {"env": "prod"})
    shared.instance(e, "bastion", {"Environment": "staging"}, shared_subnets[0])

    legacy = member(mgmt, info, "legacy-7", sessions)
    legacy.instance(e, "legacy-app", {})
    legacy.bucket("legacy-7-backups", {})
    return info


def fresh_estate(moto_url: str) -> EstateInfo:
    """Reset the moto server and build the estate (for module-scoped fixtures: build once, read many)."""
    request = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    return build_estate(moto_url)


if __name__ == "__main__":  # build it in a running moto server: python tests/aws_estate.py http://127.0.0.1:5000
    import sys

    built = build_estate(sys.argv[1])
    print(json.dumps({"accounts": built.accounts, "ous": built.ous, "arns": built.arns}, indent=2))
